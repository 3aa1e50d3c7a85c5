"""VEA: the fused evidence equals an eager reference, highlighting feeds pass 2 and lands on the right pixels, neutral
strength is the baseline; on every model family (Qwen's patch rows of 32 or 28 px tokens, LLaVA's planes of 14 px)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from interventions.vea import VEAParams, evidence_pixel_map
from models.attention_log import read_records
from models.batch import GenerationSettings
from models.vea import HINT
from plugin.registered import VLMVEA as VEAModel
from plugin.registered import VLMBaseline as VLM
from tests.support.commands import find_results, lmms_eval_env, run_lmms_eval
from tests.support.reference import fold_by_loops, image_positions, prepare, reference_logits
from tests.support.scoring import vsr_accuracy_from_samples
from tests.support.tolerance import assert_matches_reference, tolerance
from vsr_tasks.synthetic import generate

LAYERS = [1, 3]


@pytest.fixture(scope="module")
def vea(checkpoint):
    return VEAModel(pretrained=str(checkpoint), device="cpu", batch_size=2, layers=LAYERS)


def eager_evidence(reference, batch, layers) -> list[torch.Tensor]:
    """Head mean of the last row of softmax(QK^T) at ``layers`` (eager, full N x N), averaged, per sequence."""
    model, eager = reference
    reference_logits(model, batch)
    grids = []
    for b, keys in enumerate(image_positions(batch)):
        rows = torch.stack([eager.captured[layer][b].mean(dim=0)[keys] for layer in layers])
        [image] = batch.image_tokens[b]  # LLaVA-NeXT: the base tile's and the high-resolution tiles' tokens
        grids.append(fold_by_loops(rows.double().mean(dim=0), image))
    return grids


def test_fused_evidence_equals_the_eager_reference(vea, reference):
    batch = prepare(vea)
    assert batch.inputs["attention_mask"][0].all() != batch.inputs["attention_mask"][1].all()  # one is padded
    expected = eager_evidence(reference, batch, LAYERS)
    got = vea.method.evidence(vea.engine, batch)
    assert [len(g) for g in got] == [1, 1]
    for b in range(2):
        assert got[b][0].shape == batch.image_grids[b][0]
        assert_matches_reference(got[b][0], expected[b])


def test_pass_two_answers_on_the_images_highlighted_from_the_evidence(vea, reference):
    """The images are highlighted from the evidence the method measured, and the answer is the reference's on them.

    The expected pixels are drawn from the method's own evidence, which the test above holds to the eager reference:
    drawn from the eager evidence instead, they would differ by that evidence's rounding amplified by the map's
    min-max normalisation (a division by the blurred map's range, which depends on the image), not by the method.
    """
    model, _ = reference
    batch = prepare(vea)
    params = VEAParams()
    token = vea.method.layout.token_pixels
    evidence = vea.method.evidence(vea.engine, batch)
    maps = [evidence_pixel_map(grid, params, token) for [grid] in evidence]
    expected_pixels = vea.method.layout.highlight(
        batch.inputs["pixel_values"], batch.inputs.get(vea.method.layout.geometry_key), maps, params.highlight_strength
    )
    highlighted = vea.method.highlight(vea.engine, batch, evidence)
    assert_matches_reference(highlighted.inputs["pixel_values"], expected_pixels)
    changed = (expected_pixels - batch.inputs["pixel_values"]).abs().max()
    assert changed > 10 * tolerance(expected_pixels)  # the highlight changed the image
    response = vea.engine.respond(batch, GenerationSettings(max_new_tokens=3))
    expected_logits = reference_logits(model, highlighted)
    assert_matches_reference(response.first_token_probs, torch.softmax(expected_logits, -1))
    assert [extra["decision"] for extra in response.extras] == [{"layers": LAYERS}] * 2


@pytest.mark.parametrize("with_images", [(False, False), (True, False)])
def test_prompts_without_images_pass_through(checkpoint, vea, with_images):
    baseline = VLM(pretrained=str(checkpoint), device="cpu", batch_size=2)
    settings = GenerationSettings(max_new_tokens=4)
    expected = baseline.engine.respond(prepare(baseline, with_images), settings)
    got = vea.engine.respond(prepare(vea, with_images), settings)
    assert got.texts[1] == expected.texts[1]
    assert_matches_reference(got.first_token_probs[1], expected.first_token_probs[1])
    if with_images == (False, False):
        assert got.texts == expected.texts


PAPER_HINT = "Only use words from the picture, especially those in the highlighted region, to answer the question."


@pytest.mark.parametrize(("hint", "expected"), [(True, HINT), ("Look at the bright part.", "Look at the bright part.")])
def test_hint_appends_a_sentence_and_keeps_the_image_tokens(checkpoint, hint, expected):
    hinted = VEAModel(pretrained=str(checkpoint), device="cpu", batch_size=2, layers=LAYERS, hint=hint)
    batch = prepare(hinted)
    highlighted = hinted.method.highlight(hinted.engine, batch, hinted.method.evidence(hinted.engine, batch))
    assert all(context.endswith("\n" + expected) for context in highlighted.contexts)
    text = hinted.tokenizer.decode(highlighted.inputs["input_ids"][0])
    assert expected in text and expected not in hinted.tokenizer.decode(batch.inputs["input_ids"][0])
    assert highlighted.image_token_mask.sum() == batch.image_token_mask.sum()


def test_the_paper_preset_hints_with_the_authors_sentence(checkpoint):
    """vea_paper is VEA's 'Vea' row: the augmented image and their hint sentence (vea/config.py _HIGHLIGHT_HINT)."""
    model_type = json.loads((checkpoint / "config.json").read_text())["model_type"]
    if model_type not in ("qwen2_5_vl", "llava", "gemma3"):  # the families VEA's paper profiled
        with pytest.raises(ValueError, match="has vea settings for gemma3, llava, qwen2_5_vl checkpoints only"):
            VEAModel(pretrained=str(checkpoint), device="cpu", preset="vea_paper", layers=LAYERS)
        return
    paper = VEAModel(pretrained=str(checkpoint), device="cpu", batch_size=2, preset="vea_paper", layers=LAYERS)
    assert paper.method.hint == PAPER_HINT and paper.method.arguments()["hint"] == PAPER_HINT
    with pytest.raises(ValueError, match="hint must be true, false or the text to append"):
        VEAModel(pretrained=str(checkpoint), device="cpu", layers=LAYERS, hint=3)


def test_layer_sources_are_checked_by_name(checkpoint, tmp_path, monkeypatch):
    monkeypatch.delenv("COCO_ANNOTATIONS_DIR", raising=False)
    with pytest.raises(ValueError, match="layers=.*layers_file=.*coco_annotations_dir"):
        VEAModel(pretrained=str(checkpoint), device="cpu")
    with pytest.raises(ValueError, match="not both"):
        VEAModel(pretrained=str(checkpoint), device="cpu", layers=[1], layers_file="x.json")
    with pytest.raises(ValueError, match="outside|out of range|layer"):
        VEAModel(pretrained=str(checkpoint), device="cpu", layers=[9])
    with pytest.raises(Exception, match=str(tmp_path / "missing.json")):
        VEAModel(pretrained=str(checkpoint), device="cpu", layers_file=str(tmp_path / "missing.json"))
    (tmp_path / "annotations").mkdir()
    data = tmp_path / "data"
    generate(data, 4, 2, 2, seed=0, image_size=64)
    with pytest.raises(ValueError, match="instances_train2017.json"):
        VEAModel(
            pretrained=str(checkpoint),
            device="cpu",
            coco_annotations_dir=str(tmp_path / "annotations"),
            vsr_data_dir=str(data),
            profile_cache=str(tmp_path / "cache"),
        )
    with pytest.raises(ValueError, match="unknown model argument.*smooth_strenght"):
        VEAModel(pretrained=str(checkpoint), device="cpu", layers=[1], smooth_strenght=0.3)


def test_an_attention_spike_on_one_token_brightens_exactly_that_tokens_cell(vea):
    """Evidence 0.01 everywhere and 0.02 on one token (below the denoising threshold, so it stays), no blur, the
    rest dimmed to black: the highlighted image keeps exactly that token's cell (the family's token_pixels square
    at that row and column of the grid) as the model saw it, and nothing else."""
    batch = prepare(vea)
    token = vea.method.layout.token_pixels
    expected_token = {
        "qwen3_vl": 32,
        "qwen3_vl_moe": 32,
        "qwen2_5_vl": 28,
        "llava": 14,
        "llava_next": 14,
        "gemma3": 28,
    }[vea.engine.family.model_type]
    assert token == expected_token
    grids = []
    spikes = []
    for b, sequence_grids in enumerate(batch.image_grids):
        (h, w) = sequence_grids[0]
        grid = torch.full((h, w), 0.01, dtype=torch.float64)
        row, column = (h - 1, 0) if b == 0 else (h // 2, w - 1)  # a corner, and an edge cell
        grid[row, column] = 0.02
        grids.append([grid])
        spikes.append((row, column))
    params = VEAParams(smooth_strength=0.0, highlight_strength=0.0, denoise_lambda=10.0)
    highlighted = vea.method.highlight(vea.engine, batch, grids, params)
    grid_thw = batch.inputs.get(vea.method.layout.geometry_key)
    before = vea.method.layout.images(batch.inputs["pixel_values"], grid_thw)
    after = vea.method.layout.images(highlighted.inputs["pixel_values"], grid_thw)
    for b, (row, column) in enumerate(spikes):
        (h, w) = batch.image_grids[b][0]
        assert before[b].shape[-2:] == (h * token, w * token)
        cell = (slice(None), slice(row * token, (row + 1) * token), slice(column * token, (column + 1) * token))
        kept = torch.zeros(before[b].shape[-2:], dtype=torch.bool)
        kept[cell[1:]] = True
        assert_matches_reference(after[b][cell], before[b][cell])
        assert float(after[b][:, ~kept].abs().max()) <= tolerance(before[b])  # everything outside the cell is black
        assert float(before[b][:, ~kept].abs().max()) > 0.1  # and was not black before


# --------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def synthetic_vsr(tmp_path_factory):
    out = tmp_path_factory.mktemp("vea_cli") / "data"
    generate(out, 16, 8, 4, seed=5, image_size=96)
    return out


def _check_run(output, log_folder, expected_layers):
    results, samples = find_results(output)
    accuracy = results["results"]["vsr_random_dev"]["accuracy,none"]
    assert accuracy == vsr_accuracy_from_samples(samples["vsr_random_dev"])
    assert len(samples["vsr_random_dev"]) == 8
    records = read_records(log_folder)
    assert sorted(r["doc_id"] for r in records) == sorted(s["doc_id"] for s in samples["vsr_random_dev"])
    for record in records:
        assert record["model"] == "qwen3vl_vea" and record["decision"] == {"layers": expected_layers}
        assert record["image_mass_before"] is None
        maps = np.load(log_folder / record["maps_file"])
        (h, w) = record["image_grids"][0]
        assert maps["evidence_0"].shape == (h, w) and maps["after_0"].shape == (4, h, w)
        assert maps["highlighted_0"].shape == (h * 32, w * 32, 3) and maps["highlighted_0"].dtype == np.uint8


def test_cli_with_explicit_layers(tmp_path, tiny_checkpoint, synthetic_vsr):
    log_folder = tmp_path / "attention"
    args = f"pretrained={tiny_checkpoint},device=cpu,layers=[1,3],smooth_strength=0.3,attention_log={log_folder}"
    completed = run_lmms_eval(
        ["--model", "qwen3vl_vea", "--model_args", args, "--tasks", "vsr_random_dev", "--limit", "8",
         "--batch_size", "4", "--log_samples", "--output_path", str(tmp_path / "out")],
        lmms_eval_env(synthetic_vsr),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    _check_run(tmp_path / "out", log_folder, [1, 3])


def test_cli_profiles_on_first_use_and_caches_next_to_the_checkpoint(tmp_path, tiny_checkpoint, synthetic_vsr):
    checkpoint = shutil.copytree(tiny_checkpoint, tmp_path / "checkpoint")
    log_folder = tmp_path / "attention"
    args = (
        f"pretrained={checkpoint},device=cpu,coco_annotations_dir={synthetic_vsr / 'annotations'},"
        f"vsr_data_dir={synthetic_vsr},profile_samples=6,layer_top_fraction=0.5,attention_log={log_folder}"
    )
    completed = run_lmms_eval(
        ["--model", "qwen3vl_vea", "--model_args", args, "--tasks", "vsr_random_dev", "--limit", "8",
         "--log_samples", "--output_path", str(tmp_path / "out")],
        lmms_eval_env(synthetic_vsr),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    cache = checkpoint / "vea_layers.random.n6.top0.5.json"
    assert cache.exists(), completed.stderr[-3000:]
    profile = json.loads(cache.read_text())
    assert profile["split"] == "train" and profile["samples_selected"] == 6 and len(profile["layers"]) == 2
    assert f"result cached in {cache}" in completed.stdout + completed.stderr
    _check_run(tmp_path / "out", log_folder, profile["layers"])
