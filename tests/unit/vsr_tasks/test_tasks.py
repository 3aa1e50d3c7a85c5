"""The VSR tasks load through lmms-eval's own TaskManager from the real annotation files."""

from __future__ import annotations

import inspect
from pathlib import Path

import lmms_eval.models  # noqa: F401  (loads our entry point, which registers the task folder)
import pytest
from lmms_eval.tasks import TaskManager

from finetune.data import load_splits
from vsr_tasks import ADAPTVIS_TASK_NAMES, GROUP_NAMES, HELDOUT_TASK_NAMES, TASK_NAMES, TASKS_DIR
from vsr_tasks.registration import register_task_folder

EXPECTED_DOCS = {"vsr_random_dev": 1097, "vsr_random_test": 2195, "vsr_zeroshot_dev": 340, "vsr_zeroshot_test": 1222}
EXPECTED_DOCS.update({"vsr_random_heldout": 384, "vsr_zeroshot_heldout": 174})  # 5% of 7,680 and of 3,489 train rows


@pytest.fixture(scope="module")
def task_manager(vsr_data_dir, monkeypatch_module) -> TaskManager:
    monkeypatch_module.setenv("VSR_DATA_DIR", str(vsr_data_dir))
    return TaskManager()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_bare_task_manager_indexes_every_task_and_group(task_manager):
    for name in TASK_NAMES + HELDOUT_TASK_NAMES + GROUP_NAMES:
        assert name in task_manager.all_tasks
    assert task_manager.task_index["vsr_random_dev"]["yaml_path"] == str(TASKS_DIR / "vsr_random_dev.yaml")


def test_tasks_have_the_real_document_counts(task_manager):
    loaded = task_manager.load_task_or_group(list(TASK_NAMES + HELDOUT_TASK_NAMES))
    counts = {name: len(task.test_docs()) for name, task in loaded.items()}
    assert counts == EXPECTED_DOCS


def test_the_rows_read_without_lmms_eval_are_those_of_the_task_lmms_eval_builds(task_manager):
    """``vsr_tasks.rows`` reads each task file itself (the analysis finds a logged doc_id's row with it): it reads
    what lmms-eval reads, for every VSR task the package declares, and knows no group."""
    from vsr_tasks.rows import EVERY_TASK, TaskRows, task_rows

    assert EVERY_TASK == TASK_NAMES + HELDOUT_TASK_NAMES + ADAPTVIS_TASK_NAMES
    loaded = task_manager.load_task_or_group(list(EVERY_TASK))
    for name in EVERY_TASK:
        config = loaded[name].config
        assert task_rows(name) == TaskRows.from_config(config.dataset_kwargs, config.test_split), name
    assert task_rows("vsr_random_heldout") == TaskRows("random", "heldout")
    assert task_rows("vsr_zeroshot_test_adaptvis_tune") == TaskRows("zeroshot", "test", "tune")
    assert [task_rows(name) for name in GROUP_NAMES] == [None] * len(GROUP_NAMES)


def test_documents_carry_fields_and_prompt(task_manager):
    task = task_manager.load_task_or_group(["vsr_zeroshot_dev"])["vsr_zeroshot_dev"]
    doc = task.test_docs()[0]
    assert doc["caption"] == "The dog is on the surfboard."
    assert (doc["label"], doc["relation"], doc["meta_category"], doc["subj"], doc["obj"]) == (
        1,
        "on",
        "Topological",
        "dog",
        "surfboard",
    )
    assert task.doc_to_text(doc) == (
        "Look at the image and decide whether the statement is True or False.\n"
        "Statement: The dog is on the surfboard.\n"
        "Answer with exactly one word: True or False."
    )
    assert task.doc_to_target(doc) == "True"
    images = task.doc_to_visual(doc)
    assert len(images) == 1 and images[0].mode == "RGB"


def test_groups_expand_to_their_tasks(task_manager):
    loaded = task_manager.load_task_or_group(["vsr"])
    names = set()

    def collect(tree):
        for key, value in tree.items():
            if isinstance(value, dict):
                collect(value)
            else:
                names.add(key)

    collect(loaded)
    assert names == set(TASK_NAMES)


def test_include_path_still_works_without_duplicates(vsr_data_dir, monkeypatch):
    monkeypatch.setenv("VSR_DATA_DIR", str(vsr_data_dir))
    manager = TaskManager(include_path=str(TASKS_DIR))
    assert manager.task_index["vsr_zeroshot_test"]["type"] == "python_task"
    expected = len(TASK_NAMES + HELDOUT_TASK_NAMES + ADAPTVIS_TASK_NAMES) + 2  # and the groups vsr_random, vsr_zeroshot
    assert sum(name.startswith("vsr_") for name in manager.all_tasks) == expected


def test_lmms_eval_still_has_the_method_registration_wraps():
    """If lmms-eval renames or reshapes this, bare `--tasks vsr_*` breaks: fail here, loudly."""
    original = TaskManager.initialize_tasks
    assert getattr(original, "_vsr_tasks_folder_added", False), "our wrapper is not installed"
    parameters = list(inspect.signature(original.__wrapped__).parameters)
    assert parameters == ["self", "include_path", "include_defaults"], (
        f"lmms-eval changed TaskManager.initialize_tasks to {parameters}; update vsr_tasks/registration.py"
    )
    register_task_folder()  # idempotent
    assert TaskManager.initialize_tasks is original


@pytest.mark.parametrize("dataset_type", ["random", "zeroshot"])
def test_heldout_tasks_hold_exactly_the_rows_finetune_holds_out(tmp_path, monkeypatch, dataset_type):
    """Against finetune's own held-out set (its defaults), on a set whose every image exists."""
    import shutil

    from vsr_tasks.synthetic import generate

    data = tmp_path / "data"
    generate(data, 120, 2, 2, seed=5, image_size=64)
    if dataset_type == "zeroshot":
        shutil.copytree(data / "splits" / "random", data / "splits" / "zeroshot")
    monkeypatch.setenv("VSR_DATA_DIR", str(data))
    task_name = f"vsr_{dataset_type}_heldout"
    docs = list(TaskManager().load_task_or_group([task_name])[task_name].test_docs())
    held_out = load_splits(data, dataset_type).held_out
    assert len(docs) == len(held_out) == 6  # round(0.05 * 120)
    assert [(d["image"], d["caption"], d["label"]) for d in docs] == [
        (e.image.name, e.caption, e.label) for e in held_out
    ]


def test_the_yaml_names_one_accuracy_metric_per_meta_category_in_the_tables_order():
    """The YAML is lmms-eval's format and must list the metrics; the categories are declared once (categories.py)."""
    import re

    from vsr_tasks import TASKS_DIR
    from vsr_tasks.categories import META_CATEGORIES

    text = (Path(TASKS_DIR) / "_default_template_vsr_yaml").read_text()
    metrics = re.findall(r"- metric: (\w+)\n\s+aggregation: !function utils\.(\w+)", text)
    expected = ["accuracy", "f1_true", "unparseable_rate", *(f"accuracy_{c.lower()}" for c in META_CATEGORIES)]
    assert [metric for metric, _ in metrics] == expected
    assert all(function == f"vsr_aggregate_{metric}" for metric, function in metrics)


def test_the_logged_record_carries_the_caption_that_the_analysis_reads():
    """VSR's per-document record holds the statement; ``analysis.runs.Document.caption`` reads it from there."""
    from analysis.runs import Document
    from vsr_tasks.utils import adaptvis_process_results, vsr_process_results

    doc = {"caption": "The cat is left of the dog.", "label": 1, "relation": "left of", "meta_category": "Projective"}
    assert vsr_process_results(doc, ["True"])["accuracy"] == {
        "prediction": True, "label": 1, "correct": True, "relation": "left of", "category": "Projective",
        "caption": "The cat is left of the dog.",
    }  # fmt: skip
    for process in (vsr_process_results, adaptvis_process_results):
        metrics = process(doc, ["True"])
        document = Document(doc_id=0, values={f"{key},none": value for key, value in metrics.items()})
        assert document.caption == "The cat is left of the dog."


def test_the_adaptvis_protocol_feeds_the_image_and_prompt_as_written(tmp_path, monkeypatch, family_checkpoint):
    """AdaptVis' VSR input: the image resized to 2300 x 4096 (their aro_datasets.py:105) and their question, in
    LLaVA's turn as the llava-hf chat template writes it. Theirs is the raw text
    'User: <image>\\n Determine ... Assistant:' (llava15.py:499-501): the remaining difference, documented."""
    import numpy as np
    from PIL import Image
    from transformers import AutoProcessor

    from families.turns import images_first, render_user_turn
    from vsr_tasks.utils import adaptvis_doc_to_text, adaptvis_doc_to_visual

    Image.fromarray(np.arange(48 * 64 * 3, dtype=np.uint8).reshape(48, 64, 3)).save(tmp_path / "000000000001.jpg")
    monkeypatch.setenv("VSR_IMAGE_DIR", str(tmp_path))
    doc = {"image": "000000000001.jpg", "image_link": "", "caption": "The cat is left of the dog."}
    (visual,) = adaptvis_doc_to_visual(doc)
    with Image.open(tmp_path / "000000000001.jpg") as original:
        expected = original.convert("RGB").resize((2300, 4096))
    assert visual.size == (2300, 4096) and np.array_equal(np.asarray(visual), np.asarray(expected))
    question = adaptvis_doc_to_text(doc)
    assert question == (
        "Determine whether the description about the spatial relationship is correct or not. "
        "Answer with yes or no: The cat is left of the dog."
    )
    processor = AutoProcessor.from_pretrained(str(family_checkpoint("llava")))
    rendered = render_user_turn(processor, images_first(question, [visual]).content)
    assert rendered == f"USER: <image>\n{question} ASSISTANT:"
