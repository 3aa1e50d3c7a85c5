"""The import contracts of ``make lint`` (``[tool.importlinter]`` in pyproject.toml) hold, and each one fails when a
forbidden import is added: checked on a copy of the packages with one line changed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from tests.support.environment import REPO_ROOT

CONFIG = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}  # the copy, not the installed packages
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("contracts")
    shutil.copy(REPO_ROOT / "pyproject.toml", root)
    for package in CONFIG["root_packages"]:
        shutil.copytree(REPO_ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_the_contracts_hold_on_the_repository(tree):
    completed = lint_imports(tree)
    assert completed.returncode == 0, completed.stdout[-3000:]
    assert f"Contracts: {len(CONFIG['contracts'])} kept, 0 broken." in completed.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("interventions/adaptvis.py", "import families.qwen", "method-math"),
        ("interventions/clvs.py", "import vsr_tasks.prompt", "method-math"),
        ("families/base.py", "import models.names", "families"),
        ("vsr_tasks/prompt.py", "import analysis.stats", "layers"),
        ("models/vea.py", "import profiling", "layers"),
        ("profiling/profile.py", "import plugin.loading", "layers"),
        ("models/engine.py", "import lmms_eval", "engine"),
        ("models/spec.py", "import models.runner", "acyclic"),
        ("testbed/tiny_llava.py", "import testbed.tiny_llava_next", "acyclic"),
        ("interventions/state.py", "import interventions.attention", "acyclic"),
    ],
)
def test_each_contract_fails_when_a_forbidden_import_is_added(tree, module, line, contract):
    path = tree / module
    original = path.read_text()
    path.write_text(f"{line}  # added by the test\n{original}")
    try:
        completed = lint_imports(tree)
    finally:
        path.write_text(original)
    assert completed.returncode != 0
    broken = [c["name"] for c in CONFIG["contracts"] if c["id"] == contract][0]
    assert f"{broken} BROKEN" in " ".join(completed.stdout.split()), completed.stdout[-3000:]
