"""End to end: two tiny-checkpoint evaluations through the lmms-eval CLI with the attention log on, then the report."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
from PIL import Image

from tests.support.commands import find_results, lmms_eval_env, run_cli, run_lmms_eval

pytestmark = pytest.mark.slow
TASK = "vsr_random_dev"
LIMIT = 8


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_checkpoint, vsr_data_dir):
    root = tmp_path_factory.mktemp("analysis_e2e")
    runs = {}
    for model in ("qwen3vl", "qwen3vl_adaptvis"):
        output, log = root / f"out_{model}", root / f"attn_{model}"
        completed = run_lmms_eval(
            [
                "--model",
                model,
                "--model_args",
                f"pretrained={tiny_checkpoint},attention_log={log}",
                "--tasks",
                TASK,
                "--limit",
                str(LIMIT),
                "--log_samples",
                "--output_path",
                str(output),
            ],
            lmms_eval_env(vsr_data_dir),
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        assert list(log.glob("records.rank*.jsonl")), f"{model} wrote no attention log: {completed.stderr[-2000:]}"
        runs[model] = (output, find_results(output)[0])
    out = root / "report"
    completed = run_cli(  # the report's command line as a user starts it (other tests run it in-process)
        "analysis",
        ["report", str(runs["qwen3vl"][0]), str(runs["qwen3vl_adaptvis"][0]), "--out", str(out), "--examples", "3"],
        lmms_eval_env(vsr_data_dir),
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return runs, out


def test_report_accuracies_equal_the_results_json(evaluated):
    runs, out = evaluated
    summary = json.loads((out / "summary.json").read_text())
    markdown = (out / "report.md").read_text()
    accuracy = summary["tasks"][TASK]["metrics"]["accuracy,none"]
    for model, (_, results) in runs.items():
        reported = results["results"][TASK]["accuracy,none"]
        assert accuracy["runs"][model]["value"] == accuracy["runs"][model]["results_json"] == reported
        assert accuracy["runs"][model]["n"] == LIMIT
        assert f"| accuracy (primary) | {model} | {reported:.4f} [" in markdown
    comparison = accuracy["comparisons"]["qwen3vl_adaptvis"]
    assert comparison["n"] == LIMIT and comparison["only_in_baseline"] == comparison["only_in_run"] == []


def test_every_png_is_valid_and_the_html_parses(evaluated):
    _, out = evaluated
    markdown = (out / "report.md").read_text()
    names = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", markdown)
    assert sum(n.startswith("layers_") for n in names) == 2
    assert sum(n.startswith("heatmap_") for n in names) == 3
    for name in names:
        with Image.open(out / name) as image:
            assert image.format == "PNG"
            image.verify()
    images = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "img":
                images.append(dict(attrs)["src"])

    parser = Parser()
    parser.feed((out / "report.html").read_text())
    parser.close()
    assert len(images) == len(names) and all(src.startswith("data:image/png;base64,") for src in images)
    summary = json.loads((out / "summary.json").read_text())
    assert not any("original image not found" in line for line in summary["skipped"])
