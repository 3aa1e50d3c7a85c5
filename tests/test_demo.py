"""The reduced demo (``scripts/demo.py --fast``): the whole pipeline end to end, checked by its report."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT

METHODS = ("qwen3vl", "qwen3vl_adaptvis", "qwen3vl_clvs", "qwen3vl_vea")


def test_fast_demo_writes_a_report_with_four_methods(tmp_path):
    # Active once every stage of the pipeline exists.
    for module in ("finetune", "analysis", "interventions", "vsr_tasks.synthetic"):
        pytest.importorskip(module)
    for module in ("models.qwen3vl_adaptvis", "models.qwen3vl_clvs", "models.qwen3vl_vea"):
        pytest.importorskip(module)
    out = tmp_path / "demo"
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "demo.py"), "--out", str(out), "--fast"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-6000:]
    report = out / "report" / "report.md"
    assert report.exists(), completed.stdout[-3000:]
    text = report.read_text()
    table_rows = [line for line in text.splitlines() if line.startswith("|")]
    for method in METHODS:
        assert any(method in row for row in table_rows), f"{method} missing from the report's tables"
        assert any((out / "runs" / method).rglob("*_results.json")), f"no results file for {method}"
    assert "report:" in completed.stdout
