"""The model-family seam: every family's shared prefix and neutral settings, and bad checkpoints refused by cause.

The methods' faithfulness per family is in the method tests (``test_adaptvis``, ``test_clvs``, ``test_vea_model``,
``test_interventions_mechanism``, ``test_shared_prefix``), each parametrised by family.
"""

from __future__ import annotations

import json
import shutil

import pytest

from families import FAMILIES, family_for
from models.batch import GenerationSettings
from plugin.registered import VLMCLVS as CLVSModel
from plugin.registered import VLMVEA as VEAModel
from plugin.registered import Qwen3VLAdaptVis
from plugin.registered import Qwen3VLBaseline as Qwen3VL
from plugin.registered import VLMAdaptVis as AdaptVisModel
from plugin.registered import VLMBaseline as VLM
from tests.support.environment import FAMILY_TYPES
from tests.support.reference import prepare
from tests.support.tolerance import assert_matches_reference

SETTINGS = GenerationSettings(max_new_tokens=4)
SUPPORTED = ", ".join(FAMILIES)


@pytest.fixture(scope="module", params=FAMILY_TYPES)
def checkpoint(request, family_checkpoint):
    return family_checkpoint(request.param)


def test_every_family_has_exactly_one_tiny_checkpoint_builder():
    """Each record names its test-bed module, whose ``build`` is the family's one builder."""
    import importlib

    from testbed.tiny import BUILDERS, TINY_FAMILIES

    assert list(BUILDERS) == list(FAMILIES) and TINY_FAMILIES == tuple(FAMILIES) == FAMILY_TYPES
    assert {model_type: BUILDERS[model_type].__module__ for model_type in FAMILIES} == {
        "qwen3_vl": "testbed.tiny_qwen3",
        "qwen3_vl_moe": "testbed.tiny_qwen3_moe",
        "qwen2_5_vl": "testbed.tiny_qwen2_5",
        "llava": "testbed.tiny_llava",
        "llava_next": "testbed.tiny_llava_next",
        "gemma3": "testbed.tiny_gemma3",
    }
    assert all(BUILDERS[t] is importlib.import_module(f.testbed).build for t, f in FAMILIES.items())


def test_each_checkpoint_is_detected_from_its_config(checkpoint):
    model_type = json.loads((checkpoint / "config.json").read_text())["model_type"]
    assert family_for(str(checkpoint)).model_type == model_type
    assert VLM(pretrained=str(checkpoint), device="cpu").engine.family.model_type == model_type


def test_the_shared_prefix_equals_the_whole_prompt_passes(checkpoint):
    adaptvis = AdaptVisModel(pretrained=str(checkpoint), device="cpu", batch_size=2, confidence_threshold=0.0)
    batch = prepare(adaptvis)
    new, old = adaptvis.engine.respond(batch, SETTINGS), adaptvis.engine.answer_whole_prompt(batch, SETTINGS)
    assert new.texts == old.texts
    assert_matches_reference(new.first_token_logits, old.first_token_logits)
    clvs = CLVSModel(pretrained=str(checkpoint), device="cpu", batch_size=2, uncertainty_threshold=0.0)
    new, old = clvs.engine.respond(batch, SETTINGS), clvs.engine.answer_whole_prompt(batch, SETTINGS)
    assert new.texts == old.texts
    assert_matches_reference(new.first_token_logits, old.first_token_logits)


# ----------------------------------------------------------------- refused, with the cause
def _config_only(folder, **config):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


@pytest.mark.parametrize("model", [VLM, AdaptVisModel, VEAModel])
def test_an_unsupported_model_type_is_refused_before_loading_weights(tmp_path, model):
    folder = _config_only(tmp_path / "gpt2", model_type="gpt2")  # no weights at all: nothing may be loaded
    with pytest.raises(ValueError, match=rf"model_type 'gpt2', which is not supported; vlm_\w+ takes: {SUPPORTED}"):
        model(pretrained=folder, device="cpu", layers="[1]") if model is VEAModel else model(pretrained=folder)


def test_a_video_checkpoint_is_refused_as_a_video_model(tmp_path):
    folder = _config_only(tmp_path / "video", model_type="llava_next_video")
    with pytest.raises(ValueError, match="LLaVA-NeXT-Video checkpoint .* a video model; the methods steer attention"):
        VLM(pretrained=folder)


def test_pretrained_that_is_neither_a_folder_nor_a_hub_id(tmp_path):
    with pytest.raises(ValueError, match="neither a folder nor a hub id"):
        VLM(pretrained=str(tmp_path / "no" / "such" / "folder"))
    with pytest.raises(ValueError, match="no config.json in that folder"):
        VLM(pretrained=str(tmp_path))


def test_the_study_names_take_qwen3_vl_only_and_say_which_models_take_the_rest(family_checkpoint):
    llava = str(family_checkpoint("llava"))
    for model in (Qwen3VL, Qwen3VLAdaptVis):
        with pytest.raises(ValueError, match=r"model_type 'llava'.*takes: qwen3_vl, qwen3_vl_moe .*use the vlm_\* "):
            model(pretrained=llava)
    moe = Qwen3VL(pretrained=str(family_checkpoint("qwen3_vl_moe")), device="cpu")  # dense and MoE alike
    assert type(moe.model).__name__ == "Qwen3VLMoeForConditionalGeneration"


def test_layers_are_checked_against_the_familys_depth(checkpoint):
    with pytest.raises(ValueError, match=r"layer\(s\) \[9\] out of range for a model with 4 layers"):
        AdaptVisModel(pretrained=str(checkpoint), device="cpu", layers="[1,9]")
    with pytest.raises(ValueError, match=r"out of range for a model with 4 layers"):
        VEAModel(pretrained=str(checkpoint), device="cpu", layers="[9]")


def test_a_chat_template_without_a_generation_prompt_is_refused(tmp_path, family_checkpoint):
    for family in FAMILY_TYPES:
        folder = shutil.copytree(family_checkpoint(family), tmp_path / family)
        settings = (
            json.loads((folder / "chat_template.json").read_text())
            if (folder / "chat_template.json").exists()
            else None
        )
        template_file = folder / "chat_template.jinja"
        template = template_file.read_text() if template_file.exists() else settings["chat_template"]
        stripped = template.split("{%- if add_generation_prompt")[0].split("{% if add_generation_prompt")[0]
        assert stripped != template
        if template_file.exists():
            template_file.write_text(stripped)
        else:
            (folder / "chat_template.json").write_text(json.dumps({**settings, "chat_template": stripped}))
        with pytest.raises(ValueError, match="chat template has no generation prompt"):
            VLM(pretrained=str(folder), device="cpu")


def test_a_pixel_budget_is_taken_exactly_where_the_family_says_so(checkpoint):
    """``Family.takes_pixel_budget`` (what the benchmarks read) agrees with what ``configure_pixels`` does."""
    from transformers import AutoProcessor

    family = family_for(str(checkpoint))
    processor = AutoProcessor.from_pretrained(str(checkpoint))
    if family.takes_pixel_budget:
        assert family.configure_pixels(processor, None, 4096)[1] == 4096
    else:
        with pytest.raises(ValueError, match="min_pixels / max_pixels set a Qwen processor's pixel budget"):
            family.configure_pixels(processor, None, 4096)


def test_a_fixed_size_familys_budget_is_its_processors_input_size(family_checkpoint):
    """LLaVA-1.5 (its 112 px crop) and Gemma-3 (its 224 px square) share one rule; LLaVA-NeXT runs from its tile to
    its largest canvas (224 x 224)."""
    from transformers import AutoProcessor

    from families.base import FixedSizeFamily

    budgets = {"llava": (112 * 112, 112 * 112), "gemma3": (224 * 224, 224 * 224), "llava_next": (112 * 112, 224 * 224)}
    for model_type, budget in budgets.items():
        processor = AutoProcessor.from_pretrained(str(family_checkpoint(model_type)))
        assert FAMILIES[model_type].configure_pixels(processor, None, None) == budget
    fixed = [t for t, family in FAMILIES.items() if isinstance(family, FixedSizeFamily)]
    assert fixed == ["llava", "llava_next", "gemma3"]
    assert [t for t, family in FAMILIES.items() if not family.takes_pixel_budget] == fixed


def test_pixel_budgets_are_refused_where_the_processor_crops(family_checkpoint):
    with pytest.raises(ValueError, match="min_pixels / max_pixels set a Qwen processor's pixel budget"):
        VLM(pretrained=str(family_checkpoint("llava")), device="cpu", max_pixels=4096)


def test_vea_is_refused_where_an_image_token_has_no_cell_and_the_other_methods_run(tmp_path, family_checkpoint):
    """A LLaVA checkpoint that keeps CLIP's class token (vision_feature_select_strategy 'full')."""
    folder = shutil.copytree(family_checkpoint("llava"), tmp_path / "llava_full")
    for name in ("config.json", "processor_config.json"):
        path = folder / name
        if path.exists():
            data = json.loads(path.read_text())
            data["vision_feature_select_strategy"] = "full"
            path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="VEA maps each image token to its cell.*'full'.*AdaptVis and CLVS run on it"):
        VEAModel(pretrained=str(folder), device="cpu", layers="[1]")
    with pytest.raises(ValueError, match="attention_log stores per-image attention maps, but its vision_feature"):
        VLM(pretrained=str(folder), device="cpu", attention_log=str(tmp_path / "log"))
    adaptvis = AdaptVisModel(pretrained=str(folder), device="cpu", batch_size=2)
    batch = prepare(adaptvis)
    assert [int(n) for n in batch.image_token_mask.sum(dim=1)] == [65, 65]  # 8 x 8 patches and the class token
    new, old = adaptvis.engine.respond(batch, SETTINGS), adaptvis.engine.answer_whole_prompt(batch, SETTINGS)
    assert_matches_reference(new.first_token_logits, old.first_token_logits)


def test_a_system_prompt_is_rendered_by_every_familys_template(checkpoint):
    """The system turn goes in as content parts, which every family's template renders (llava-hf's would drop a plain
    string)."""
    from transformers import AutoProcessor

    from families.turns import render_user_turn

    processor = AutoProcessor.from_pretrained(str(checkpoint))
    content = [{"type": "image"}, {"type": "text", "text": "What is left of the dog?"}]
    plain = render_user_turn(processor, content)
    with_system = render_user_turn(processor, content, "Answer in one word, please.")
    assert "Answer in one word, please." in with_system and "Answer in one word" not in plain
    assert with_system.index("Answer in one word") < with_system.index("What is left of the dog?")
