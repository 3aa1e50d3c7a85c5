"""``python -m interventions.vea profile ...``: the VEA command line (its only subcommand profiles layers).

A module of its own so that the VEA math (:mod:`interventions.vea`) never imports the profiling code:
the arrows run one way, ``__main__`` -> ``profile`` -> ``vea``.
"""

from __future__ import annotations

import sys

from interventions.vea.profile import main as profile_main


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m interventions.vea profile [options]   (python -m interventions.vea profile -h)")
        raise SystemExit(0 if argv else 2)
    if argv[0] != "profile":
        raise SystemExit(f"unknown subcommand {argv[0]!r}; the only one is 'profile'")
    profile_main(argv[1:])


if __name__ == "__main__":
    main()
