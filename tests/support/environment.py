"""Where the tests run: the repository, the real VSR files, the skip policy of strict mode, run-wide built fixtures."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from families import FAMILIES

REPO_ROOT = Path(__file__).resolve().parents[2]
STRICT_VARIABLE = "VSR_TESTS_STRICT"  # .ci/run sets it: CI must run every test, never skip one
FAMILY_TYPES = tuple(FAMILIES)  # every supported family (each has a tiny checkpoint builder: testbed.tiny)


def require(condition: bool, reason: str) -> None:
    """Skip the test with ``reason`` when ``condition`` is false, or fail under ``VSR_TESTS_STRICT=1`` (CI)."""
    if condition:
        return
    if os.environ.get(STRICT_VARIABLE) == "1":
        pytest.fail(f"{reason} ({STRICT_VARIABLE}=1: CI runs every test)")
    pytest.skip(reason)


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Any]) -> Any:
    """``build(folder)`` once per test run, however many xdist workers ask: the first builds under a file lock,
    the others wait for it and reuse the folder. ``build`` returns what the fixture gives (paths, JSON-able)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # one folder per run, above each worker's own
    folder = root / f"built-{name}"
    done = folder / ".built.json"
    with FileLock(str(folder) + ".lock"):
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            result = build(folder)
            done.write_text(json.dumps(result, default=str))
    result = json.loads(done.read_text())
    return result
