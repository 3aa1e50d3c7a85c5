"""``python -m profiling ...``: choose VEA's evidence layers (``profiling.cli``)."""

from profiling.cli import main

if __name__ == "__main__":
    main()
