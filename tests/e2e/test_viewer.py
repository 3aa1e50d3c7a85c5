"""``python -m analysis view``: the callbacks as plain functions, the live re-run cache, bad input, and a real browser.

The browser test starts the app on 127.0.0.1, drives headless Chromium through Selenium (next, the layer slider, a
filter, a live re-run), asserts on what the page shows, checks that no request left 127.0.0.1, and saves
screenshots (``VSR_TEST_ARTIFACTS``, default ``.test_artifacts/`` in the repository). The documentation's
figure comes from ``make demo``'s runs instead (``scripts/figures.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from analysis.attention_sources import attention_source
from analysis.heatmaps import document_figure
from analysis.live import LiveError, LiveModel, check_checkpoint
from analysis.runs import load_runs
from analysis.viewer import ALL, BASELINE_WRONG, CHANGED, Viewer
from models.attention_log import read_attention_log
from tests.support.browser import browser, free_port, reachable, requested, wait
from tests.support.commands import lmms_eval_env, run_lmms_eval, run_module
from tests.support.environment import REPO_ROOT
from vsr_tasks.synthetic import generate

pytestmark = pytest.mark.slow
TASK = "vsr_random_dev"
DOCS = 6
ARTIFACTS = Path(os.environ.get("VSR_TEST_ARTIFACTS", REPO_ROOT / ".test_artifacts"))


@pytest.fixture(scope="module")
def checkpoint(trained):
    """The fine-tuned tiny model: it answers True or False, as a demo model does."""
    return trained[0]


@pytest.fixture(scope="module")
def fixture_runs(tmp_path_factory, checkpoint):
    """Demo-style runs: a synthetic set, the tiny model, qwen3vl and AdaptVis with attention logs, and a run without."""
    root = tmp_path_factory.mktemp("viewer")
    data = root / "data"
    generate(data, 8, DOCS, 2, seed=7, image_size=128, relations=["left of", "right of", "near"])
    runs = {}
    for model, log in (("qwen3vl", True), ("qwen3vl_adaptvis", True), ("qwen3vl_clvs", False)):
        output = root / "runs" / model
        args = f"pretrained={checkpoint},device=cpu,batch_size=3"
        if log:
            args += f",attention_log={root / 'attention' / model}"
        completed = run_lmms_eval(
            ["--model", model, "--model_args", args, "--tasks", TASK, "--log_samples", "--output_path", str(output)],
            lmms_eval_env(data),
        )
        assert list(output.rglob("*_results.json")), completed.stderr[-3000:]
        runs[model] = output
    return {"root": root, "data": data, "runs": runs}


@pytest.fixture()
def viewer(fixture_runs, monkeypatch, tmp_path):
    monkeypatch.setenv("VSR_DATA_DIR", str(fixture_runs["data"]))
    runs = load_runs([fixture_runs["runs"][m] for m in ("qwen3vl", "qwen3vl_adaptvis", "qwen3vl_clvs")])
    sources = {run.label: attention_source(run, {}) for run in runs}
    return Viewer(
        runs,
        {label: s.log for label, s in sources.items()},
        {label: s.description for label, s in sources.items()},
        tmp_path / "cache",
    )


# ------------------------------------------------------------ callbacks
def test_filters_keep_exactly_the_documents_they_name(viewer):
    base = {d.doc_id: d for d in viewer.baseline(TASK).tasks[TASK].documents.values()}
    adaptvis = next(r for r in viewer.runs if r.model == "qwen3vl_adaptvis").tasks[TASK].documents
    assert viewer.filtered(TASK, ALL) == list(range(DOCS))
    assert viewer.filtered(TASK, BASELINE_WRONG) == [i for i, d in sorted(base.items()) if not d.correct]
    clvs = next(r for r in viewer.runs if r.model == "qwen3vl_clvs").tasks[TASK].documents
    changed = [
        i
        for i in range(DOCS)
        if adaptvis[i].prediction != base[i].prediction or clvs[i].prediction != base[i].prediction
    ]
    assert viewer.filtered(TASK, CHANGED) == changed
    for relation in ("left of", "right of", "near"):
        assert viewer.filtered(TASK, f"relation: {relation}") == [
            i for i, d in sorted(base.items()) if d.relation == relation
        ]
    label = next(r for r in viewer.runs if r.model == "qwen3vl_adaptvis").label
    assert viewer.filtered(TASK, f"wrong for {label}") == [i for i, d in sorted(adaptvis.items()) if not d.correct]
    assert {f"wrong for {r.label}" for r in viewer.methods(TASK)} <= set(viewer.filters(TASK))


def test_navigation_is_clamped_and_a_foreign_doc_id_is_refused(viewer):
    docs = viewer.filtered(TASK, "relation: near")
    assert viewer.counter(0, docs) == f"1 / {len(docs)}"
    assert viewer.step(0, -1, docs) == 0 and viewer.step(len(docs) - 1, +1, docs) == len(docs) - 1
    assert viewer.locate(docs[-1], docs) == (len(docs) - 1, "")
    outside = next(i for i in range(DOCS) if i not in docs)
    position, message = viewer.locate(outside, docs)
    assert position is None and f"doc {outside} is not in this set ({len(docs)} documents" in message
    assert viewer.locate(999, viewer.filtered(TASK, ALL))[0] is None
    assert viewer.locate(2.5, docs)[1] == "type a whole doc id"


def test_figures_are_the_reports_own(viewer, fixture_runs, tmp_path):
    view = viewer.document(TASK, 2, layer=1)
    expected = tmp_path / "expected.png"
    runs = [r for r in viewer.runs if TASK in r.tasks]
    document_figure(expected, TASK, 2, runs, viewer.logs, 1)
    assert view.heatmap.read_bytes() == expected.read_bytes()  # the same drawing code, the same figure
    assert "no map for qwen3vl_clvs" in view.heatmap_note and "no attention_log" in view.heatmap_note
    log = read_attention_log(fixture_runs["root"] / "attention" / "qwen3vl_adaptvis")
    record = log.get(TASK, 2)
    adaptvis_row = next(row for row in view.answers if row[0].startswith("qwen3vl_adaptvis"))
    assert adaptvis_row[2] == f"{record.decision['confidence']:.3f}"
    assert {row[3] for row in view.answers} <= {"right", "wrong"}
    assert view.layer_plot.is_file() and view.image.shape[:2] == (128, 128)
    assert "doc **2**" in view.info and "relation" in view.info


def test_a_missing_image_gets_a_placeholder_naming_the_file(viewer, fixture_runs, monkeypatch, tmp_path):
    empty = tmp_path / "no_images"
    empty.mkdir()
    monkeypatch.setenv("VSR_IMAGE_DIR", str(empty))
    view = viewer.document(TASK, 0)
    name = json.loads((fixture_runs["data"] / "splits" / "random" / "dev.jsonl").read_text().splitlines()[0])["image"]
    assert "image not found" in view.image_note and name in view.image_note
    assert view.image.shape == (240, 360, 3) and float(np.std(view.image)) > 0  # grey, with the message drawn on it


def test_live_reruns_are_cached_on_disk(fixture_runs, checkpoint, tmp_path):
    live = LiveModel(checkpoint, tmp_path / "cache", device="cpu")
    image = next((fixture_runs["data"] / "images").glob("*.png"))
    settings = {"confidence_threshold": 0.5, "sharpen_weight": 1.5, "smoothen_weight": 0.3}
    first = live.run("qwen3vl_adaptvis", settings, TASK, 0, "Is the cat left of the dog?", [image], max_new_tokens=8)
    second = live.run("qwen3vl_adaptvis", settings, TASK, 0, "Is the cat left of the dog?", [image], max_new_tokens=8)
    assert live.calls == 1 and not first.cached and second.cached
    assert (second.answer, second.confidence, second.decision) == (first.answer, first.confidence, first.decision)
    assert first.decision["alpha"] == (0.3 if first.decision["confidence"] < 0.5 else 1.5)
    assert Path(first.heatmap).is_file()
    other = live.run(
        "qwen3vl_adaptvis",
        {**settings, "smoothen_weight": 0.9},
        TASK,
        0,
        "Is the cat left of the dog?",
        [image],
        max_new_tokens=8,
    )
    assert live.calls == 2 and other.decision["alpha"] == (0.9 if first.decision["confidence"] < 0.5 else 1.5)
    assert all(path.is_relative_to(tmp_path / "cache") for path in tmp_path.rglob("*") if path.is_file())


@pytest.mark.parametrize(
    "model, settings, decision",
    [
        ("qwen3vl_pai", {"alpha": 0.9, "gamma": 1.3}, {"alpha": 0.9, "gamma": 1.3, "layers": [2, 8],
                                                       "edit_first_token": True}),
        ("qwen3vl_vaf", {"enh_para": 1.5, "sup_para": 0.5, "start_layer": 1, "end_layer": 4},
         {"enh_para": 1.5, "sup_para": 0.5, "layers": [1, 4]}),
    ],
)  # fmt: skip
def test_a_new_method_reruns_live_with_no_code_of_its_own(
    fixture_runs, checkpoint, tmp_path, model, settings, decision
):
    """PAI and VAF reach the viewer's live re-run through their declaration alone: the run's settings (sliders and a
    layer range) make the engine, the answer is the engine's own at that setting, the heatmap is drawn from its log."""
    from models.batch import GenerationSettings
    from plugin.loading import engine_for

    live = LiveModel(checkpoint, tmp_path / "cache", device="cpu")
    image = next((fixture_runs["data"] / "images").glob("*.png"))
    prompt = "Is the cat left of the dog?"
    result = live.run(model, settings, TASK, 0, prompt, [image], max_new_tokens=8)
    assert {key: result.decision[key] for key in decision} == decision and Path(result.heatmap).is_file()
    engine = engine_for(model, pretrained=str(checkpoint), device="cpu", **settings)
    batch = engine.prepare([prompt], [[image]], [0], [TASK])
    assert result.answer == engine.respond(batch, GenerationSettings(max_new_tokens=8)).texts[0]


def test_live_refuses_a_folder_that_is_not_a_supported_checkpoint(tmp_path):
    with pytest.raises(LiveError, match="no config.json there"):
        check_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(LiveError, match="model_type 'llama', which is not supported"):
        check_checkpoint(tmp_path)
    completed = run_module(
        "analysis",
        ["view", str(tmp_path), "--live", str(tmp_path), "--cache_dir", str(tmp_path / "c")],
        lmms_eval_env(),
    )
    assert completed.returncode != 0 and "model_type 'llama', which is not supported" in completed.stderr


def test_a_port_in_use_is_one_line_naming_the_flag(fixture_runs, tmp_path):
    """Checked before the runs or a live model load: no minute of loading, no Gradio traceback."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = str(fixture_runs["runs"]["qwen3vl"])
        args = ["view", run, "--port", str(port), "--live", str(tmp_path / "nowhere"), "--cache_dir", str(tmp_path)]
        completed = run_module("analysis", args, lmms_eval_env())
    assert completed.returncode != 0 and "Traceback" not in completed.stderr
    assert (
        completed.stderr.strip()
        == f"error: --port {port} is not free on 127.0.0.1 (Address already in use): pass another --port"
    )


def test_without_gradio_the_command_names_the_extra(tmp_path):
    code = "import sys; sys.modules['gradio'] = None; from analysis.__main__ import main; main(sys.argv[1:])"
    args = [sys.executable, "-c", code, "view", str(tmp_path), "--cache_dir", str(tmp_path / "c")]
    completed = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert "pip install 'vsr-attention-steering[app]'" in completed.stderr + completed.stdout


# ------------------------------------------------------------ a real browser
def test_the_page_in_a_real_browser(fixture_runs, checkpoint, tmp_path):
    driver = browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    port, cache, home = free_port(), tmp_path / "cache", tmp_path / "home"
    home.mkdir()
    runs = [str(fixture_runs["runs"][m]) for m in ("qwen3vl", "qwen3vl_adaptvis", "qwen3vl_clvs")]
    env = lmms_eval_env(fixture_runs["data"], HOME=str(home))
    command = [sys.executable, "-m", "analysis", "view", *runs, "--port", str(port), "--live", str(checkpoint)]
    server = subprocess.Popen([*command, "--cache_dir", str(cache), "--device", "cpu"], cwd=REPO_ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait(lambda: reachable(port), what="the server")
        driver.get(url)

        def text(element_id: str) -> str:
            found = driver.find_elements(By.ID, element_id)  # empty until the page has rendered
            return found[0].text if found else ""

        wait(lambda: text("counter") == f"1 / {DOCS}", what="the counter")

        def heatmap() -> str:
            found = driver.find_elements(By.CSS_SELECTOR, "#heatmap img")
            return found[0].get_attribute("src") if found else ""

        first = wait(heatmap, what="the heatmap")
        driver.save_screenshot(str(ARTIFACTS / "viewer_start.png"))

        driver.find_element(By.ID, "next").click()
        wait(lambda: text("counter") == f"2 / {DOCS}", what="next")
        assert "doc 1:" in text("info")
        second = wait(lambda: heatmap() != first and heatmap(), what="the next document's heatmap")

        layer = driver.find_element(By.CSS_SELECTOR, "#layer input[type=number]")
        layer.send_keys(Keys.CONTROL, "a")  # a modifier stays down until the call ends: one call per chord
        layer.send_keys("0", Keys.ENTER)
        wait(lambda: heatmap() != second, what="the heatmap at layer 0")
        assert text("heatmap_note").startswith("layer 0")

        dev = [
            json.loads(line)
            for line in (fixture_runs["data"] / "splits" / "random" / "dev.jsonl").read_text().splitlines()
        ]
        near = sum(row["relation"] == "near" for row in dev)
        box = driver.find_element(By.CSS_SELECTOR, "#filter input")
        box.click()
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys("relation: near")
        time.sleep(1)
        box.send_keys(Keys.ENTER)
        wait(lambda: text("counter") == f"1 / {near}", what="the filtered counter")
        driver.save_screenshot(str(ARTIFACTS / "viewer_filtered.png"))

        driver.find_element(By.ID, "live_run").click()
        answer = wait(lambda: text("live_answer"), timeout=180, what="the live answer")
        assert "qwen3vl_adaptvis" in answer and "answer" in answer and "first-token confidence" in answer
        wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#live_heatmap img"), what="the live map")
        driver.save_screenshot(str(ARTIFACTS / "viewer_live.png"))
        outside = [u for u in requested(driver) if not u.startswith(("http://127.0.0.1", "data:", "blob:"))]
        assert outside == [], f"requests left the machine: {outside}"
    finally:
        driver.quit()
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert not any(home.rglob("*")), f"the app wrote outside its cache folder: {list(home.rglob('*'))}\n{output}"
    assert any(cache.rglob("*.png"))
