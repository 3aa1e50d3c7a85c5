"""Every study is a data file run by one runner: each file is complete, and every name in it resolves."""

from __future__ import annotations

import json
import sys

import pytest

from models.presets import presets
from plugin import model_classes
from tests.support.environment import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
from study import ARM, Study, study_names  # noqa: E402  (scripts/ is not a package)

REQUIRED = ("study", "paper", "headline", "checkpoints", "baseline", "methods", "tasks", "model_args", "data",
            "notes", "reference")  # fmt: skip


def test_the_studies_are_the_files_with_the_seed_study_first():
    files = sorted(path.stem for path in (REPO_ROOT / "scripts" / "studies").glob("*.json"))
    assert study_names() == ("seed", *[name for name in files if name != "seed"])
    assert set(study_names()) == {"seed", "adaptvis", "clvs", "vea", "pai", "vaf"}


@pytest.mark.parametrize("name", study_names())
def test_every_name_in_a_study_file_resolves(name):
    study = Study.load(name)
    spec = study.spec
    assert all(key in spec for key in REQUIRED) and spec["study"] == name
    runs = study.models()
    models = {study.model_of(run) for run in runs}
    assert models <= set(model_classes())  # registered --model names
    for arm in spec["checkpoints"]:
        for run in runs[1:]:  # each method's run and each variant take a preset of their method
            preset = study.preset(run, arm)
            assert ARM not in preset and study.model_of(run).split("_", 1)[1] in presets()[preset]
        assert all(ARM not in task for task in study.tasks(arm, test=True))
    assert set(spec.get("checkpoint_model_args", {})) <= set(spec["checkpoints"])
    for entry in spec["reference"]["results"]:
        assert entry["checkpoint"] in spec["checkpoints"] and study.entry_run(entry) in runs and entry["source"]
        assert entry["task"] in {task for arm in spec["checkpoints"] for task in study.tasks(arm, test=True)} | {
            task for task in spec["tasks"]
        } or entry["task"].startswith("whatsup_")  # WhatsUp's subsets belong to its group task


def test_the_seed_study_resolves_each_split_to_its_own_preset_tasks_and_published_numbers():
    study = Study.load("seed")
    assert study.preset("qwen3vl_adaptvis", "random") == "seed_random"
    assert study.preset("qwen3vl", "zeroshot") is None  # the baseline takes no preset
    assert study.tasks("zeroshot") == ["vsr_zeroshot_dev"]
    assert study.tasks("zeroshot", test=True) == ["vsr_zeroshot_dev", "vsr_zeroshot_test"]
    reference = study.reference({"random": "/ckpt/random"})
    assert reference["name"] == "reported by the study" and len(reference["results"]) == 4  # the random split's
    assert {entry["pretrained"] for entry in reference["results"]} == {"/ckpt/random"}
    assert json.loads(json.dumps(reference)) == reference


def test_model_args_with_commas_reach_the_model_as_one_argument():
    """A study's system prompt has commas and an apostrophe: quoted on the command line, unquoted by the model."""
    from lmms_eval.utils import simple_parse_args_string
    from pipeline import format_model_args

    from models.arguments import unquote

    prompt = Study.load("clvs").model_args("llava-1.5-7b")["system_prompt"]
    assert "," in prompt and "'" in prompt
    parsed = simple_parse_args_string(
        format_model_args({"pretrained": "/m", "system_prompt": prompt, "dtype": "float16"})
    )
    assert parsed["pretrained"] == "/m" and parsed["dtype"] == "float16" and unquote(parsed["system_prompt"]) == prompt
    assert Study.load("clvs").model_args("qwen2.5-vl-7b") == {"dtype": "bfloat16", "min_pixels": 14 * 14 * 1280,
                                                              "max_pixels": 32 * 32 * 1280}  # fmt: skip


@pytest.mark.parametrize("name", study_names())
def test_every_setting_has_a_source_and_the_page_shows_them(name):
    """docs/REPRODUCE.md's provenance table of each study is generated from its file; every setting has a source."""
    from study import preset_settings, provenance_table, settings

    study = Study.load(name)
    sources = study.spec["sources"]
    assert [path for path, _ in settings(study)] == list(sources)  # every setting, and only settings, in order
    assert all(source.strip() for source in sources.values())
    # every value of the presets it runs, each task's line of a per-task preset included, names its source
    assert all(source.strip() and source != "MISSING" for _, _, source in preset_settings(study))
    assert all(entry["source"].strip() for entry in study.spec["reference"]["results"])
    page = (REPO_ROOT / "docs" / "REPRODUCE.md").read_text()
    marker = f"<!-- provenance: {name} -->\n"
    assert marker in page
    shown = page.split(marker, 1)[1].split("\n\n###", 1)[0].rstrip("\n")
    assert shown == provenance_table(study)


def test_a_variant_is_a_run_of_its_model_under_another_preset_with_its_own_published_numbers(tmp_path):
    """AdaptVis' study runs ScalingVis as vlm_adaptvis with preset=scalingvis_paper; its published row (index.html
    424-434) belongs to that run only, so the report puts it beside that run and not beside AdaptVis'."""
    from analysis.reference import load_reference

    study = Study.load("adaptvis")
    assert study.models() == ["vlm_baseline", "vlm_adaptvis", "vlm_adaptvis+scalingvis_paper"]
    assert study.preset("vlm_adaptvis+scalingvis_paper", "llava-1.5-7b") == "scalingvis_paper"
    assert study.preset("vlm_adaptvis", "llava-1.5-7b") == "adaptvis_paper"
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(study.reference({"llava-1.5-7b": "/m"})))
    reference = load_reference(path)
    assert reference.get(
        "whatsup_controlled_a_adaptvis", "vlm_adaptvis", "accuracy", "/m", "adaptvis_paper"
    ) == pytest.approx(0.849)
    assert reference.get(
        "whatsup_controlled_a_adaptvis", "vlm_adaptvis", "accuracy", "/m", "scalingvis_paper"
    ) == pytest.approx(0.645)
    assert reference.get("whatsup_controlled_a_adaptvis", "vlm_baseline", "accuracy", "/m", None) == pytest.approx(
        0.603
    )
