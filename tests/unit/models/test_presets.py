"""``preset=NAME``: the study's per-split settings from models/presets.json, explicit arguments winning."""

from __future__ import annotations

import json

import pytest
from loguru import logger

from models.batch import GenerationSettings
from models.presets import PRESETS_FILE, presets, resolve
from plugin.registered import Qwen3VLAdaptVis, Qwen3VLCLVS, Qwen3VLVEA
from tests.support.reference import prepare


def test_the_data_file_holds_the_studys_settings():
    data = json.loads(PRESETS_FILE.read_text())
    assert sorted(data) == [
        "adaptvis_paper",
        "clvs_paper",
        "pai_paper",
        "scalingvis_paper",
        "seed_random",
        "seed_zeroshot",
        "vaf_paper",
        "vea_paper",
    ]
    random, zeroshot = data["seed_random"], data["seed_zeroshot"]
    assert random["adaptvis"] == {"confidence_threshold": 0.8, "sharpen_weight": 1.2, "smoothen_weight": 0.2}
    assert zeroshot["adaptvis"]["smoothen_weight"] == 0.1
    assert random["vea"] == {"smooth_strength": 0.5, "highlight_strength": 0.5, "layers": [17, 20, 24]}
    assert zeroshot["vea"] == {"smooth_strength": 0.8, "highlight_strength": 0.2, "layers": [17, 20, 10]}
    for preset in (random, zeroshot):
        assert preset["clvs"] == {"smoothing": 0.7, "window_memory_size": 0.8, "uncertainty_threshold": 0.5}


def test_precedence_explicit_then_preset_then_default():
    defaults = {"smooth_strength": 0.5, "highlight_strength": 0.5, "denoise_lambda": 10.0}
    given = {"smooth_strength": None, "highlight_strength": 0.9, "denoise_lambda": None, "layers": None}
    values, from_preset = resolve("vea", "seed_zeroshot", given, defaults, exclusive=("layers", "layers_file"))
    assert values == {"smooth_strength": 0.8, "highlight_strength": 0.9, "denoise_lambda": 10.0, "layers": [17, 20, 10]}
    assert from_preset == {"smooth_strength": 0.8, "layers": [17, 20, 10]}
    given = {**given, "layers_file": "mine.json"}  # an explicit layer source replaces the preset's layers
    values, from_preset = resolve("vea", "seed_zeroshot", given, defaults, exclusive=("layers", "layers_file"))
    assert "layers" not in values and values["layers_file"] == "mine.json"
    assert resolve("clvs", None, {"smoothing": None}, {"smoothing": 0.7}) == ({"smoothing": 0.7}, {})


def test_models_expand_a_preset_and_explicit_arguments_win(tiny_checkpoint, tmp_path):
    messages: list[str] = []
    sink = logger.add(lambda message: messages.append(str(message)), level="INFO")
    try:
        adaptvis = Qwen3VLAdaptVis(
            pretrained=str(tiny_checkpoint), device="cpu", preset="seed_zeroshot", attention_log=str(tmp_path / "a")
        )
        clvs = Qwen3VLCLVS(pretrained=str(tiny_checkpoint), device="cpu", preset="seed_random", smoothing=0.9)
        vea = Qwen3VLVEA(pretrained=str(tiny_checkpoint), device="cpu", preset="seed_zeroshot", layers="[1,3]")
    finally:
        logger.remove(sink)
    assert (adaptvis.method.params.confidence_threshold, adaptvis.method.params.sharpen_weight) == (0.8, 1.2)
    assert adaptvis.method.params.smoothen_weight == 0.1
    assert (
        clvs.method.params.smoothing,
        clvs.method.params.window_memory_size,
        clvs.method.params.uncertainty_threshold,
    ) == (0.9, 0.8, 0.5)
    assert (vea.method.params.smooth_strength, vea.method.params.highlight_strength, vea.method.layers) == (
        0.8,
        0.2,
        [1, 3],
    )
    announced = [m for m in messages if "preset" in m]
    assert any("qwen3vl_adaptvis: preset seed_zeroshot set confidence_threshold, sharpen_weight, smoothen_weight" in m
               and "smoothen_weight=0.1" in m for m in announced)  # fmt: skip
    assert any("qwen3vl_clvs: preset seed_random set uncertainty_threshold, window_memory_size" in m for m in announced)
    response = adaptvis.engine.respond(prepare(adaptvis), GenerationSettings(max_new_tokens=1))
    batch = prepare(adaptvis)
    adaptvis.engine.finish(batch, response, response.texts)
    record = json.loads((tmp_path / "a" / "records.rank0.jsonl").read_text().splitlines()[0])
    assert record["model_args"]["preset"] == "seed_zeroshot" and record["model_args"]["smoothen_weight"] == 0.1


def test_the_study_layers_apply_when_no_layer_source_is_given(tiny_checkpoint):
    with pytest.raises(ValueError, match=r"layers: layer\(s\) \[17, 20, 24\] out of range for a model with 4 layers"):
        Qwen3VLVEA(pretrained=str(tiny_checkpoint), device="cpu", preset="seed_random")


@pytest.mark.parametrize("klass", [Qwen3VLAdaptVis, Qwen3VLCLVS, Qwen3VLVEA])
def test_an_unknown_preset_is_refused_with_the_known_ones(tiny_checkpoint, klass):
    with pytest.raises(
        ValueError,
        match="unknown preset 'seed_random_typo'; known presets: adaptvis_paper, clvs_paper, pai_paper, scalingvis_paper, seed_random, seed_zeroshot, vaf_paper, vea_paper",
    ):
        klass(pretrained=str(tiny_checkpoint), device="cpu", preset="seed_random_typo", layers="[1]")
    assert set(presets()) == {
        "seed_random",
        "seed_zeroshot",
        "adaptvis_paper",
        "scalingvis_paper",
        "clvs_paper",
        "vea_paper",
        "pai_paper",
        "vaf_paper",
    }


def test_the_paper_presets_hold_the_authors_settings_with_their_sources():
    from models.presets import preset_arguments, preset_source

    # AdaptVis run.sh:4: --weight1 0.5 (uncertain: smoothen) --weight2 1.5 --threshold 0.4, and one line per dataset
    adaptvis = preset_arguments("adaptvis_paper", "adaptvis", "llava", 32)
    by_task = adaptvis.pop("by_task")
    assert adaptvis == {"confidence_threshold": 0.4, "smoothen_weight": 0.5, "sharpen_weight": 1.5,
                        "confidence_rule": "probability_rounded", "layers": "<32"}  # fmt: skip
    lines = {"whatsup_controlled_a": (0.5, 1.5, 0.4), "whatsup_controlled_b": (0.5, 1.5, 0.35),
             "whatsup_coco_one": (0.5, 1.2, 0.3), "whatsup_coco_two": (0.5, 1.2, 0.3),
             "whatsup_vg_one": (0.5, 2.0, 0.2), "whatsup_vg_two": (0.5, 2.0, 0.2),
             "vsr_zeroshot_test_adaptvis": (0.5, 1.2, 0.64)}  # fmt: skip
    assert {
        task: (v["smoothen_weight"], v["sharpen_weight"], v["confidence_threshold"]) for task, v in by_task.items()
    } == lines
    assert by_task["vsr_zeroshot_test_adaptvis"]["confidence_rule"] == "max_logit_rounded"  # their VSR branch
    assert "run.sh:4" in preset_source("adaptvis_paper", "adaptvis")
    # each line names its file and line: the later run.sh (its fork's copy), lines 18-24
    assert [v["source"].split(" (")[0] for v in by_task.values()] == [
        f"dltmdwoOS/AdaptVis_copy 22a18df run.sh:{line}" for line in range(18, 25)
    ]
    # ScalingVis: one weight per dataset for both branches
    scaling = preset_arguments("scalingvis_paper", "adaptvis", "llava", 32)["by_task"]
    assert {task: v["smoothen_weight"] for task, v in scaling.items() if v["smoothen_weight"] == v["sharpen_weight"]} == {
        "whatsup_controlled_a": 0.8, "whatsup_controlled_b": 0.8, "whatsup_coco_one": 1.2, "whatsup_coco_two": 1.2,
        "whatsup_vg_one": 2.0, "whatsup_vg_two": 2.0, "vsr_zeroshot_test_adaptvis": 0.5}  # fmt: skip
    # CLVS scripts/all.sh: beta 0.8, gamma 0.8, delta 0.5; the logit lens without the final norm
    assert preset_arguments("clvs_paper", "clvs", "qwen2_5_vl", 28) == {
        "smoothing": 0.8, "window_memory_size": 0.8, "uncertainty_threshold": 0.5, "position_unbiased": True,
        "logit_lens_norm": False}  # fmt: skip
    assert "scripts/all.sh" in preset_source("clvs_paper", "clvs")
    # VEA: one set of numbers, their hint sentence (vea/config.py _HIGHLIGHT_HINT), the pre-profiled layers by family
    vea = {"denoise_lambda": 10, "smooth_strength": 0.5, "highlight_strength": 0.5, "layer_top_fraction": 0.1,
           "hint": "Only use words from the picture, especially those in the highlighted region, to answer the question."}  # fmt: skip
    assert preset_arguments("vea_paper", "vea", "qwen2_5_vl", 28) == {**vea, "layers": [18, 22, 24]}
    assert preset_arguments("vea_paper", "vea", "qwen2_5_vl", 64)["layers"] == [49, 50, 51, 52, 53, 55, 56]
    assert preset_arguments("vea_paper", "vea", "llava", 32)["layers"] == [14, 15, 17, 19]
    assert preset_arguments("vea_paper", "vea", "gemma3", 34) == {**vea, "layers": [17, 19, 21, 23]}  # 4B
    assert preset_arguments("vea_paper", "vea", "gemma3", 62)["layers"] == [35, 37, 40, 41, 47, 53, 58]  # 27B
    assert "vea/config.py" in preset_source("vea_paper", "vea")
    with pytest.raises(ValueError, match="has vea settings for 28-layer, 64-layer qwen2_5_vl checkpoints, not for one"):
        preset_arguments("vea_paper", "vea", "qwen2_5_vl", 4)
    with pytest.raises(
        ValueError, match="for gemma3, llava, qwen2_5_vl checkpoints only, not for model_type 'qwen3_vl'"
    ):
        preset_arguments("vea_paper", "vea", "qwen3_vl", 28)
    # PAI README.md:65,82: one command for every model; with guidance their code leaves the first token's row alone
    assert preset_arguments("pai_paper", "pai", "llava", 32) == {
        "alpha": 0.2, "gamma": 1.1, "start_layer": 2, "end_layer": 32, "edit_first_token": False}  # fmt: skip
    assert "LALBJ/PAI 9bbd8bd README.md:65" in preset_source("pai_paper", "pai")
    # ClearSight: the POPE command's factors, layers 9-14
    assert preset_arguments("vaf_paper", "vaf", "llava", 32) == {
        "enh_para": 1.15, "sup_para": 0.95, "start_layer": 9, "end_layer": 15}  # fmt: skip
    assert "infer_pope.py:54" in preset_source("vaf_paper", "vaf")


def test_the_pai_preset_on_a_shallower_model_names_the_range_and_takes_an_explicit_end(tiny_checkpoint):
    """Their end layer is LLaVA-1.5-7B's depth: on a 4-layer checkpoint it is refused by name, before loading, and an
    explicit ``end_layer`` wins over it."""
    from plugin.registered import VLMPAI

    with pytest.raises(ValueError, match=r"\[2, 32\) leaves the model, which has 4 layers"):
        VLMPAI(pretrained=str(tiny_checkpoint), device="cpu", preset="pai_paper")
    model = VLMPAI(pretrained=str(tiny_checkpoint), device="cpu", preset="pai_paper", end_layer=4)
    assert model.method.arguments() == {"preset": "pai_paper", "alpha": 0.2, "gamma": 1.1, "start_layer": 2,
                                        "end_layer": 4, "edit_first_token": False, "layers": [2, 4]}  # fmt: skip


def test_a_paper_preset_on_a_checkpoint_of_another_depth_takes_explicit_layers(family_checkpoint):
    from plugin.registered import VLMVEA as VEAModel

    checkpoint = str(family_checkpoint("qwen2_5_vl"))  # 4 layers: the preset has layers for 28 and 64
    with pytest.raises(ValueError, match="not for one with 4 decoder layers: pass the setting it lacks explicitly"):
        VEAModel(pretrained=checkpoint, device="cpu", preset="vea_paper")
    model = VEAModel(pretrained=checkpoint, device="cpu", preset="vea_paper", layers="[2,3]")
    assert model.method.values["denoise_lambda"] == 10 and model.method.values["layer_top_fraction"] == 0.1
    assert list(model.method.layers) == [2, 3]


@pytest.mark.parametrize(
    ("method", "depth", "expected"),
    [
        ("pai", 32, (2, 32)),  # LLaVA-1.5-7B: their own range
        ("pai", 4, (0, 4)),
        ("vaf", 32, (9, 15)),
        ("vaf", 28, (7, 13)),  # 9 * 28 // 32, 15 * 28 // 32
        ("vaf", 4, (1, 2)),  # one layer at least
        ("vaf", 2, (0, 1)),
    ],
)
def test_a_papers_layer_range_is_placed_at_the_same_relative_depth(method, depth, expected):
    """The demo's and the benchmarks' default on models shallower than the papers' (never a real run's)."""
    from models.methods import METHODS
    from models.presets import scaled_layer_range

    placed = scaled_layer_range(METHODS[method].params(), depth)
    assert (placed["start_layer"], placed["end_layer"]) == expected
