"""Model names come from two naming schemes and the method registry (``models.names``, ``plugin.registered``)."""

from __future__ import annotations

import pickle

import pytest

from models.methods import METHODS, method_of_model
from models.names import DEFAULT_BASELINE, is_baseline, model_name, model_names, scheme_of
from plugin import model_class, model_classes

EXPECTED_NAMES = [
    "qwen3vl", "qwen3vl_adaptvis", "qwen3vl_clvs", "qwen3vl_vea", "qwen3vl_pai", "qwen3vl_vaf",
    "vlm_baseline", "vlm_adaptvis", "vlm_clvs", "vlm_vea", "vlm_pai", "vlm_vaf",
]  # fmt: skip


def test_every_model_name_is_generated_from_the_schemes_and_the_methods():
    assert model_names(METHODS) == EXPECTED_NAMES
    assert list(model_classes()) == EXPECTED_NAMES
    assert DEFAULT_BASELINE == "qwen3vl"


@pytest.mark.parametrize(
    ("model_type", "method", "expected"),
    [
        ("qwen3_vl", None, "qwen3vl"),
        ("qwen3_vl", "clvs", "qwen3vl_clvs"),
        ("qwen3_vl_moe", "adaptvis", "qwen3vl_adaptvis"),  # the study's names take the MoE checkpoints too
        ("qwen3_vl_moe", None, "qwen3vl"),
        ("qwen2_5_vl", "vea", "vlm_vea"),
        ("llava", None, "vlm_baseline"),
    ],
)
def test_model_name_picks_the_first_scheme_that_takes_the_family(model_type, method, expected):
    assert model_name(method, model_type) == expected


def test_baselines_and_methods_are_told_apart():
    assert [name for name in EXPECTED_NAMES if is_baseline(name)] == ["qwen3vl", "vlm_baseline"]
    assert method_of_model("vlm_clvs").name == "clvs"
    assert scheme_of("qwen3vl", METHODS)[1] is None
    with pytest.raises(KeyError, match="runs no method"):
        method_of_model("qwen3vl")
    with pytest.raises(KeyError, match="unknown model 'qwen3vl_pasta'"):
        model_class("qwen3vl_pasta")


def test_generated_classes_carry_their_name_families_and_method():
    study = model_class("qwen3vl_adaptvis")
    anywhere = model_class("vlm_adaptvis")
    assert (study.MODEL_NAME, study.FAMILIES) == ("qwen3vl_adaptvis", ("qwen3_vl", "qwen3_vl_moe"))
    assert (anywhere.MODEL_NAME, anywhere.FAMILIES) == ("vlm_adaptvis", None)
    assert study.METHOD is anywhere.METHOD is METHODS["adaptvis"]
    assert study.__mro__[1] is anywhere.__mro__[1]  # one implementation under both names
    assert pickle.loads(pickle.dumps(study)) is study  # lmms-eval's module.Class paths and pickling find it
    assert model_class("vlm_baseline").__module__ == "plugin.registered"


def test_a_base_class_cannot_be_instantiated_without_a_registered_name():
    from plugin.vlm import VLM

    with pytest.raises(TypeError, match="base class: instantiate a registered model"):
        VLM(pretrained="unused")


@pytest.mark.parametrize(
    ("model_type", "expected"),
    [
        ("qwen3_vl_moe", "qwen3vl"),
        ("llava", "vlm"),
    ],
)
def test_the_viewer_and_the_benchmarks_name_models_as_the_registry_does(model_type, expected):
    """A Qwen3-VL MoE checkpoint runs under the study's names (it used to be sent to ``vlm_*``)."""

    from analysis.live import live_models
    from benchmarks.interventions import model_name as benchmark_model_name

    expected = {f"{expected}_{method}" for method in ("adaptvis", "clvs", "vea", "pai", "vaf")}
    assert set(live_models(model_type)) == expected
    assert {benchmark_model_name(row, model_type) for row in ("adaptvis", "clvs", "vea", "pai", "vaf")} == expected
