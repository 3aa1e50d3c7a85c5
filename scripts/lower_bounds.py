"""A virtual environment with the lowest versions ``pyproject.toml`` declares, layered over the project's own ``.venv``.

``python scripts/lower_bounds.py --venv .venv-lower`` makes ``.venv-lower``: a venv whose interpreter sees the base
venv's packages (a ``.pth`` file adds its site-packages after its own) and holds, in its own site-packages, each
pinned distribution at its declared lower bound (``transformers>=X`` -> ``transformers==X``) with whatever pip must
change beside it to satisfy that pin. Nothing in the base venv is changed (pip leaves packages outside the environment
alone). So proving a lower bound costs one small download instead of a second torch, and ``make test-lower`` (CI) runs
the family x method contract tests there. ``--pin NAME==VERSION`` tries another version (how the bounds were found:
docs/DEVELOPMENT.md, "Versions").
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip's own copy of the same parser
    from pip._vendor import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parents[1]
PINNED = ("transformers",)  # the distributions CI holds at their declared lower bound


def declared_lower_bounds(pyproject: Path = REPO_ROOT / "pyproject.toml") -> dict[str, str]:
    """``name -> version`` for every ``name>=version`` in the project's dependencies."""
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    bounds = {}
    for requirement in dependencies:
        match = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*(?:\[[^\]]*\])?\s*>=\s*([^,;\s]+)", requirement)
        if match:
            bounds[match.group(1).lower()] = match.group(2)
    return bounds


def make_overlay(folder: Path, pins: list[str]) -> Path:
    """The venv at ``folder`` over this interpreter's site-packages, with ``pins`` installed in it; its python."""
    venv.EnvBuilder(with_pip=True, clear=True).create(folder)
    python = folder / "bin" / "python"
    own = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    base = sysconfig.get_paths()["purelib"]
    (own / "zz_base_venv.pth").write_text(f"import site; site.addsitedir({base!r})\n")
    subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *pins], check=True)
    base_bin = Path(sys.executable).parent
    for script in base_bin.iterdir():  # the base venv's console scripts (lmms-eval, ...), run by this interpreter
        target = folder / "bin" / script.name
        if target.exists() or not script.is_file():
            continue
        lines = script.read_bytes().split(b"\n", 1)
        if len(lines) == 2 and lines[0].startswith(b"#!") and str(base_bin).encode() in lines[0]:
            target.write_bytes(f"#!{python}".encode() + b"\n" + lines[1])
            target.chmod(0o755)
    return python


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=REPO_ROOT / ".venv-lower", help="the venv to make")
    parser.add_argument(
        "--pin", action="append", default=None, help="NAME==VERSION instead of the declared lower bounds (repeatable)"
    )
    args = parser.parse_args(argv)
    bounds = declared_lower_bounds()
    pins = args.pin or [f"{name}=={bounds[name]}" for name in PINNED]
    python = make_overlay(args.venv, pins)
    shown = subprocess.run(
        [str(python), "-c", "import torch, transformers, lmms_eval, accelerate, peft; "
         "print(*(f'{m.__name__} {m.__version__}' for m in (torch, transformers, accelerate, peft)), sep=', ')"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    print(f"{args.venv}: {', '.join(pins)} over {sys.prefix} ({shown})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
