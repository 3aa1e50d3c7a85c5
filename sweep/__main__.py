"""``python -m sweep``: see :mod:`sweep.cli`."""

from sweep.cli import main

raise SystemExit(main())
