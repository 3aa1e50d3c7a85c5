"""The report and heatmap commands on synthetic lmms-eval runs and attention logs (no model involved)."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from analysis.__main__ import main
from analysis.attention_sources import attention_source
from analysis.heatmaps import document_figure, mean_map, panels_for
from analysis.report import ReportSettings, build_report
from analysis.runs import load_runs
from analysis.visuals import THUMBNAIL_SIDE
from tests.support.runs import make_documents, write_attention_log, write_images, write_run

TASK = "vsr_random_dev"
LABELS = [1, 0] * 6
# baseline: right on docs 0-5, wrong on 6-10, unparseable on 11
BASE_PREDICTIONS = [bool(label) for label in LABELS[:6]] + [not label for label in LABELS[6:11]] + [None]
# adaptvis fixes 6, 7, 8 and breaks 0
ADAPT_PREDICTIONS = list(BASE_PREDICTIONS)
for doc_id in (6, 7, 8):
    ADAPT_PREDICTIONS[doc_id] = bool(LABELS[doc_id])
ADAPT_PREDICTIONS[0] = not LABELS[0]


class _HTMLCounter(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.tags: dict[str, int] = {}

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag == "img":
            self.images.append(dict(attrs)["src"])


def _pngs_named(markdown: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", markdown)


def _table_rows(markdown: str, heading: str) -> list[list[str]]:
    """The body rows of the first table after ``heading``."""
    section = markdown.split(heading + "\n", 1)[1]
    table = next(block.strip() for block in section.split("\n\n") if block.strip().startswith("|"))
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]


def _write_two_runs(tmp: Path) -> dict:
    """A baseline and an AdaptVis evaluation in one --output_path folder, each with its attention log."""
    base_docs = make_documents(LABELS, BASE_PREDICTIONS)
    adapt_docs = make_documents(LABELS, ADAPT_PREDICTIONS)
    runs = tmp / "runs"
    base_log = write_attention_log(tmp / "attn_base", "qwen3vl", TASK, list(range(12)), image_share=0.2)
    adapt_log = write_attention_log(tmp / "attn_adapt", "qwen3vl_adaptvis", TASK, list(range(12)), before=True)
    base = write_run(
        runs, "qwen3vl", f"pretrained=/ckpt,attention_log={base_log}", {TASK: base_docs}, "20260101_000000"
    )
    adapt = write_run(
        runs, "qwen3vl_adaptvis", f"pretrained=/ckpt,attention_log={adapt_log}", {TASK: adapt_docs}, "20260101_000100"
    )
    images = write_images(tmp / "images", base_docs)
    return {"runs": runs, "base": base, "adapt": adapt, "tmp": tmp, "images": images}


@pytest.fixture
def two_runs(tmp_path, monkeypatch):
    written = _write_two_runs(tmp_path)
    monkeypatch.setenv("VSR_IMAGE_DIR", str(written["images"]))
    monkeypatch.delenv("VSR_DATA_DIR", raising=False)
    return written


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    written = _write_two_runs(tmp_path_factory.mktemp("analysis_report"))
    out = written["tmp"] / "report"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VSR_IMAGE_DIR", str(written["images"]))
        patch.delenv("VSR_DATA_DIR", raising=False)
        summary = build_report([written["runs"]], out, ReportSettings(examples=4, bootstrap=2000))
    return {**written, "out": out, "summary": summary, "md": (out / "report.md").read_text()}


def test_table_accuracies_equal_the_results_json(report):
    metrics = report["summary"]["tasks"][TASK]["metrics"]
    for name, label in (("base", "qwen3vl"), ("adapt", "qwen3vl_adaptvis")):
        reported = json.loads(report[name].read_text())["results"][TASK]["accuracy,none"]
        assert metrics["accuracy,none"]["runs"][label]["value"] == reported
        assert metrics["accuracy,none"]["runs"][label]["n"] == 12
        row = next(r for r in _table_rows(report["md"], "### Metrics") if r[:2] == ["accuracy (primary)", label])
        assert row[2].startswith(f"{reported:.4f} [") and row[3] == f"{reported:.4f}"
        overview = _table_rows(report["md"], "## Results overview")
        assert [row[:2] for row in overview] == [[TASK, "accuracy"]]
        column = ["qwen3vl", "qwen3vl_adaptvis"].index(label) + 2
        assert overview[0][column].startswith(f"{reported:.4f} [") and overview[0][column].endswith("(n=12)")
    # hand counts: baseline 6/12 right, adaptvis 6 + 3 - 1 = 8/12; F1 and unparseable of the baseline
    base = {key: metric["runs"]["qwen3vl"]["value"] for key, metric in metrics.items()}
    assert base["accuracy,none"] == 0.5 and base["unparseable_rate,none"] == pytest.approx(1 / 12)
    # baseline True predictions: docs 0, 2, 4 (right), 7, 9 (label 0, wrong) -> tp 3, fp 2, fn 3 (docs 6, 8, 10)
    assert base["f1_true,none"] == pytest.approx(6 / 11)
    assert metrics["accuracy,none"]["runs"]["qwen3vl_adaptvis"]["value"] == pytest.approx(8 / 12)


def test_paired_comparison_counts_and_mcnemar(report):
    comparison = report["summary"]["tasks"][TASK]["metrics"]["accuracy,none"]["comparisons"]["qwen3vl_adaptvis"]
    assert (comparison["fixed"], comparison["broken"], comparison["n"]) == (3, 1, 12)
    assert comparison["p_value"] == pytest.approx(2 * (1 + 4) / 16)
    assert comparison["difference"] == pytest.approx(2 / 12)
    assert comparison["ci_low"] <= 2 / 12 <= comparison["ci_high"]
    # the overview holds the same comparison, with its McNemar p and Holm's (one comparison: the same)
    overview = report["summary"]["overview"][0]["comparisons"]["qwen3vl_adaptvis"]
    assert overview["p_value"] == pytest.approx(comparison["p_value"]) and overview["test"] == "exact McNemar"
    # Holm over every comparison in the report (here: accuracy, F1 of True, the unparseable rate), by hand
    p_values = sorted(
        c["p_value"]
        for metric in report["summary"]["tasks"][TASK]["metrics"].values()
        for c in metric["comparisons"].values()
    )
    steps = [min(1.0, (len(p_values) - k) * p) for k, p in enumerate(p_values)]
    holm = [max(steps[: k + 1]) for k in range(len(steps))]
    assert overview["holm_p"] == pytest.approx(holm[p_values.index(comparison["p_value"])])
    assert overview["significant"] is False
    assert _table_rows(report["md"], "## Results overview")[0][4].startswith("+0.1667 [")
    row = next(
        r for r in _table_rows(report["md"], "### Metrics") if r[:2] == ["accuracy (primary)", "qwen3vl_adaptvis"]
    )
    assert row[4].startswith("+0.1667 [") and row[5:7] == ["0.625", "exact McNemar"]
    assert (comparison["baseline"], comparison["only_in_baseline"], comparison["only_in_run"]) == ("qwen3vl", [], [])


def test_breakdown_by_category_and_relation(report):
    rows = {r[0]: r[1:] for r in _table_rows(report["md"], "### Accuracy by meta-category")}
    # Projective = docs 0, 4, 8: baseline right on 0, 4; adaptvis right on 4, 8
    assert rows["Projective"] == ["0.667 (n=3)", "0.667 (n=3)"]
    # Proximity = docs 1, 5, 9: baseline right on 1, 5; adaptvis the same
    assert rows["Proximity"] == ["0.667 (n=3)", "0.667 (n=3)"]
    # Topological (on) = 2, 6, 10: baseline 1/3, adaptvis fixes 6 -> 2/3
    assert rows["Topological"] == ["0.333 (n=3)", "0.667 (n=3)"]
    relations = {r[0]: r[1:] for r in _table_rows(report["md"], "### Accuracy by relation")}
    assert relations["facing"] == ["0.333 (n=3)", "0.667 (n=3)"]  # docs 3, 7, 11


def test_every_png_exists_and_the_html_parses(report):
    names = _pngs_named(report["md"])
    layer_plots = [n for n in names if n.startswith("layers_")]
    heatmaps = [n for n in names if n.startswith("heatmap_")]
    assert len(layer_plots) == 2
    # the documents adaptvis changed (0, 6, 7, 8) come first; examples=4 takes exactly those
    assert heatmaps == [f"heatmap_{TASK}_doc{i}.png" for i in (0, 6, 7, 8)]
    thumbnails = [n for n in names if n.startswith("thumbs/")]
    assert thumbnails == [f"thumbs/{TASK}_doc{i}_0.png" for i in (0, 6, 7, 8)]  # broken (0) first, then fixed
    for name in names:
        with Image.open(report["out"] / name) as image:
            if name in thumbnails:
                # the fixture's 128 x 96 images fit in a thumbnail as they are
                assert image.format == "PNG" and image.size == (128, 96) and max(image.size) <= THUMBNAIL_SIDE
            else:
                assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 200
            image.verify()
    parser = _HTMLCounter()
    parser.feed((report["out"] / "report.html").read_text())
    parser.close()
    # runs, overview, metrics, the documents AdaptVis broke (1) and fixed (3), 2 breakdowns
    assert parser.tags["table"] == 7 and parser.tags["html"] == 1
    assert len(parser.images) == len(names)
    for src, name in zip(parser.images, names):
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == (report["out"] / name).read_bytes()
    assert "None." in report["md"].split("## Skipped plots", 1)[1]


def test_heatmap_map_is_the_mean_of_the_last_third(report):
    maps = dict(np.load(report["tmp"] / "attn_adapt" / "maps" / TASK / "6.npz"))
    expected = maps["after_0"].astype(np.float64)[2:4].mean(axis=0)
    np.testing.assert_allclose(mean_map(maps, [2, 3]), expected)
    assert np.unravel_index(np.argmax(expected), expected.shape) == (6 % 3, 6 % 4)


def test_missing_attention_log_still_builds_the_tables(tmp_path):
    runs = tmp_path / "runs"
    write_run(
        runs,
        "qwen3vl",
        f"pretrained=/ckpt,attention_log={tmp_path / 'never_written'}",
        {TASK: make_documents(LABELS, BASE_PREDICTIONS)},
    )
    write_run(
        runs,
        "qwen3vl_adaptvis",
        "pretrained=/ckpt",
        {TASK: make_documents(LABELS, ADAPT_PREDICTIONS)},
        "20260101_000100",
    )
    out = tmp_path / "report"
    summary = build_report([runs], out, ReportSettings(bootstrap=500))
    markdown = (out / "report.md").read_text()
    assert [r[3] for r in _table_rows(markdown, "### Metrics") if r[0] == "accuracy (primary)"] == ["0.5000", "0.6667"]
    comparison = summary["tasks"][TASK]["metrics"]["accuracy,none"]["comparisons"]["qwen3vl_adaptvis"]
    assert (comparison["fixed"], comparison["broken"]) == (3, 1)
    skipped = markdown.split("## Skipped plots", 1)[1]
    assert (
        f"layer plot of qwen3vl on {TASK}: no attention log (attention log folder {tmp_path / 'never_written'} does not exist)"
        in skipped
    )
    assert (
        f"layer plot of qwen3vl_adaptvis on {TASK}: no attention log (the run had no attention_log in its model_args)"
        in skipped
    )
    assert f"heatmaps on {TASK}: no run has an attention log with records of this task" in skipped
    # the forest plot needs no attention log; nothing else is drawn
    assert summary["figures"] == ["forest.png"] and [p.name for p in out.glob("*.png")] == ["forest.png"]
    assert "<table>" in (out / "report.html").read_text()


def test_differing_document_sets_are_reported(tmp_path):
    runs = tmp_path / "runs"
    base_docs = make_documents(LABELS, BASE_PREDICTIONS)
    adapt_docs = make_documents(LABELS + [1], ADAPT_PREDICTIONS + [True])[1:]  # lacks doc 0, has doc 12
    write_run(runs, "qwen3vl", "pretrained=/ckpt", {TASK: base_docs})
    write_run(runs, "qwen3vl_adaptvis", "pretrained=/ckpt", {TASK: adapt_docs}, "20260101_000100")
    out = tmp_path / "report"
    summary = build_report([runs], out, ReportSettings(bootstrap=500))
    comparison = summary["tasks"][TASK]["metrics"]["accuracy,none"]["comparisons"]["qwen3vl_adaptvis"]
    assert comparison["n"] == 11 and comparison["only_in_baseline"] == [0] and comparison["only_in_run"] == [12]
    assert (comparison["fixed"], comparison["broken"]) == (3, 0)  # the broken doc 0 is not shared
    markdown = (out / "report.md").read_text()
    assert (
        "qwen3vl_adaptvis vs qwen3vl: compared on the 11 shared documents; only in the baseline: 0; only in the run: 12"
        in markdown
    )


def test_cli_report_with_an_attention_log_switched_off(two_runs, capsys):
    out = two_runs["tmp"] / "cli_report"
    code = main(
        [
            "report",
            str(two_runs["base"]),
            str(two_runs["adapt"]),
            "--out",
            str(out),
            "--bootstrap",
            "300",
            "--examples",
            "1",
            "--attention_log",
            "qwen3vl_adaptvis=none",
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["bootstrap"] == 300
    assert summary["figures"] == ["forest.png", "layers_vsr_random_dev_qwen3vl.png", "heatmap_vsr_random_dev_doc0.png"]
    assert (
        f"layer plot of qwen3vl_adaptvis on {TASK}: no attention log (switched off with --attention_log)"
        in summary["skipped"]
    )


def test_cli_heatmap_with_and_without_the_image(two_runs, monkeypatch, capsys):
    out = two_runs["tmp"] / "one.png"
    assert main(["heatmap", str(two_runs["runs"]), "--doc", "6", "--layer", "-1", "--out", str(out)]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG"
    monkeypatch.delenv("VSR_IMAGE_DIR")
    alone = two_runs["tmp"] / "alone.png"
    assert main(["heatmap", str(two_runs["runs"]), "--doc", "6", "--task", TASK, "--out", str(alone)]) == 0
    assert "original image not found" in capsys.readouterr().err
    with Image.open(alone) as image:
        assert image.format == "PNG"
    assert main(["heatmap", str(two_runs["runs"]), "--doc", "6", "--layer", "9", "--out", str(alone)]) == 2
    assert "--layer 9 is outside the model's 4 layers" in capsys.readouterr().err


def test_runs_group_by_model_args_and_the_baseline_can_be_any_run(tmp_path):
    runs = tmp_path / "runs"
    base_docs = make_documents(LABELS, BASE_PREDICTIONS)
    write_run(runs, "qwen3vl", "pretrained=/a", {TASK: base_docs}, "20260101_000000")
    write_run(runs, "qwen3vl", "pretrained=/a", {"vsr_zeroshot_dev": base_docs[:5]}, "20260101_000100")
    write_run(runs, "qwen3vl", "pretrained=/b", {TASK: make_documents(LABELS, ADAPT_PREDICTIONS)}, "20260101_000200")
    (a, b) = load_runs([runs])
    assert (a.label, b.label) == ("qwen3vl (pretrained=a)", "qwen3vl (pretrained=b)")
    assert sorted(a.tasks) == [TASK, "vsr_zeroshot_dev"] and sorted(b.tasks) == [TASK]
    summary = build_report([runs], tmp_path / "out", ReportSettings(baseline="qwen3vl (pretrained=a)", bootstrap=200))
    comparison = summary["tasks"][TASK]["metrics"]["accuracy,none"]["comparisons"]["qwen3vl (pretrained=b)"]
    assert (comparison["baseline"], comparison["fixed"], comparison["broken"]) == ("qwen3vl (pretrained=a)", 3, 1)
    assert summary["tasks"]["vsr_zeroshot_dev"]["metrics"]["accuracy,none"]["runs"]["qwen3vl (pretrained=a)"]["n"] == 5
    # the default baseline name matches both qwen3vl runs: nothing to compare, and the report says so
    summary = build_report([runs], tmp_path / "out_default", ReportSettings(bootstrap=200))
    assert summary["tasks"][TASK]["metrics"]["accuracy,none"]["comparisons"] == {}
    assert (
        "Every run on this task matches the baseline `qwen3vl`: nothing to compare"
        in (tmp_path / "out_default" / "report.md").read_text()
    )


def test_vea_shows_its_highlighted_image_and_relative_log_folders_resolve(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)  # a cwd from which "attn_vea" means nothing
    documents = make_documents(LABELS[:3], BASE_PREDICTIONS[:3])
    write_attention_log(tmp_path / "attn_vea", "qwen3vl_vea", TASK, [0, 1, 2], vea=True)
    write_run(tmp_path / "runs", "qwen3vl_vea", "pretrained=/ckpt,attention_log=attn_vea", {TASK: documents})
    (run,) = load_runs([tmp_path / "runs"])
    source = attention_source(run, {})
    assert source.log is not None and source.description == f"{tmp_path / 'attn_vea'} (3 records)"
    panels, num_layers = panels_for(run, source.log, TASK, 1, None)
    assert num_layers == 4 and [p.title for p in panels] == ["qwen3vl_vea", "qwen3vl_vea: highlighted image"]
    assert panels[1].picture.shape == (96, 128, 3) and panels[0].attention.shape == (3, 4)
    monkeypatch.setenv("VSR_IMAGE_DIR", str(write_images(tmp_path / "images", documents)))
    path, note = document_figure(tmp_path / "vea.png", TASK, 1, [run], {run.label: source.log})
    assert note == "" and Image.open(path).format == "PNG"


def test_an_unknown_baseline_is_refused_naming_the_runs(two_runs, capsys):
    """A typo used to compare silently against the default's fallback while the header named the typo."""
    code = main(
        ["report", str(two_runs["runs"]), "--out", str(two_runs["tmp"] / "typo"), "--baseline", "qwen3vl_basline"]
    )
    assert code == 2 and not (two_runs["tmp"] / "typo").exists()
    error = capsys.readouterr().err.strip()
    assert (
        error
        == "error: --baseline qwen3vl_basline: no run is labelled or modelled so; the runs here: qwen3vl, qwen3vl_adaptvis"
    )


def test_the_html_renders_the_markdown_emphasis_it_is_given(report):
    html = (report["out"] / "report.html").read_text()
    assert "<strong>qwen3vl_adaptvis</strong> vs <code>qwen3vl</code>" in html  # "Documents a run changed"
    assert "**" not in html
