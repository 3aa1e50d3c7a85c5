"""Every family end to end: the four family-detecting models through lmms-eval's CLI code on VSR rows with the
attention log, then ``analysis report`` with its layer plots and heatmaps, and a live re-run in the viewer.

Qwen3-VL runs the same path under the study's names in ``e2e/test_analysis.py`` and ``e2e/test_user_path.py``; here the
other families, whose heatmaps sit on the part of the image their grid covers (LLaVA-1.5: the centre crop; Gemma-3:
the whole image, squashed to a square; LLaVA-NeXT: the high-resolution tiles' kept tokens, with the base tile folded
onto them). The runs are ``tests.support.evaluations.family_runs``.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from analysis.live import LiveModel
from models.attention_log import read_records
from models.methods import METHODS
from testbed.tiny_llava import PATCH
from testbed.tiny_llava_next import PINPOINTS, TILE
from tests.support.evaluations import FAMILY_LIMIT as LIMIT
from tests.support.evaluations import FAMILY_LOGGED as LOGGED
from tests.support.evaluations import FAMILY_MODELS as MODELS
from tests.support.evaluations import OTHER_FAMILIES
from tests.support.evaluations import VSR_TASK as TASK
from tests.support.reference import llava_next_region
from tests.support.scoring import vsr_accuracy_from_samples
from vsr_tasks.data import load_split

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=OTHER_FAMILIES)
def evaluated(request, family_evaluation, family_checkpoint, vsr_data_dir):
    family = request.param
    return {
        **family_evaluation(family),
        "family": family,
        "checkpoint": family_checkpoint(family),
        "data": vsr_data_dir,
    }


def test_the_four_models_answer_and_log_every_document(evaluated):
    family = evaluated["family"]
    assert set(evaluated["results"]) == set(MODELS)
    for model, (results, samples) in evaluated["results"].items():
        assert results["config"]["model"] == model
        assert results["results"][TASK]["accuracy,none"] == vsr_accuracy_from_samples(samples[TASK])
        assert len(samples[TASK]) == LIMIT
        if model not in LOGGED:
            continue
        log = evaluated["logs"][model]
        records = read_records(log)
        assert sorted(record["doc_id"] for record in records) == list(range(LIMIT))
        rows = load_split("random", "dev", evaluated["data"])
        for record in records:
            image = rows[record["doc_id"]]["image"]
            with Image.open(evaluated["data"] / "images" / image) as opened:
                width, height = opened.size
            side = min(width, height)
            expected = {
                "llava": [(width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2],
                "llava_next": llava_next_region(width, height, TILE, PATCH, PINPOINTS),
            }.get(family, [0, 0, width, height])
            assert record["image_regions"] == [pytest.approx(expected, abs=0.01)]
            [(grid_h, grid_w)] = record["image_grids"]
            if family == "llava":  # the 112 px crop of the tiny model, 14 px patches
                assert (grid_h, grid_w) == (8, 8)
            with np.load(log / record["maps_file"]) as maps:
                assert maps["after_0"].shape == (4, grid_h, grid_w)
                if family == "gemma3":  # the tiny model's 224 px square, 8 x 8 pooled tokens
                    assert (grid_h, grid_w) == (8, 8)
                if model == "vlm_vea":
                    token = 14 if family in ("llava", "llava_next") else 28
                    assert maps["highlighted_0"].shape == (grid_h * token, grid_w * token, 3)


def test_the_report_compares_the_runs_and_draws_every_figure(evaluated):
    """(That each number is the results JSON's: ``test_report_numbers.py``, on these runs.)"""
    summary = evaluated["summary"]
    accuracy = summary["tasks"][TASK]["metrics"]["accuracy,none"]
    assert set(accuracy["runs"]) == set(MODELS)
    comparisons = accuracy["comparisons"]
    assert set(comparisons) == {"vlm_adaptvis", "vlm_clvs", "vlm_vea"}
    assert all(c["baseline"] == "vlm_baseline" and c["n"] == LIMIT for c in comparisons.values())
    names = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", evaluated["md"])
    assert sum(name.startswith("layers_") for name in names) == len(LOGGED)  # one plot per logged run
    assert sum(name.startswith("heatmap_") for name in names) == LIMIT
    assert not any(task_line.startswith("heatmap") for task_line in summary["skipped"]), summary["skipped"]


def test_a_live_re_run_answers_through_the_family_detecting_models(evaluated, tmp_path):
    live = LiveModel(evaluated["checkpoint"], tmp_path / "cache", device="cpu")
    assert set(live.models) == {f"vlm_{name}" for name in METHODS}  # every method, the family-detecting names
    row = load_split("random", "dev", evaluated["data"])[0]
    from vsr_tasks.prompt import build_prompt

    image = evaluated["data"] / "images" / row["image"]
    result = live.run(
        "vlm_adaptvis", {"sharpen_weight": 1.5}, TASK, 0, build_prompt(row["caption"]), [image], max_new_tokens=8
    )
    assert set(result.decision) == {"confidence", "alpha"} and result.heatmap is not None
    again = live.run(
        "vlm_adaptvis", {"sharpen_weight": 1.5}, TASK, 0, build_prompt(row["caption"]), [image], max_new_tokens=8
    )
    assert again.cached and again.answer == result.answer and live.calls == 1
