"""``python -m profiling ...``: choose VEA's evidence layers (``profiling.layers``)."""

from profiling.layers import main

if __name__ == "__main__":
    main()
