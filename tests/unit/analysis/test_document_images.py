"""A logged VSR document's row and image, found again from its task and doc_id, for any task a VSR task file declares."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from analysis.document_images import caption_of, document_pictures, resolve_image, vsr_row
from analysis.runs import VSR_METRIC, Document
from finetune.data import load_splits
from vsr_tasks import data
from vsr_tasks.synthetic import generate


@pytest.fixture(scope="module")
def vsr_folder(tmp_path_factory):
    """A VSR data folder with splits and every image: 120 train rows (6 held out), 4 dev rows, both dataset types."""
    folder = tmp_path_factory.mktemp("document_images") / "data"
    generate(folder, 120, 4, 4, seed=5, image_size=64)
    shutil.copytree(folder / "splits" / "random", folder / "splits" / "zeroshot")
    return folder


def _logged(doc_id: int) -> Document:
    """A VSR document as an old samples file logged it: no input_media, no caption in the record."""
    record = {"correct": True, "prediction": True, "label": 1, "relation": "left of", "category": "Directional"}
    return Document(doc_id=doc_id, values={VSR_METRIC: record})


@pytest.mark.parametrize("dataset_type", ["random", "zeroshot"])
def test_a_held_out_task_finds_the_rows_finetune_held_out_and_their_images(vsr_folder, monkeypatch, dataset_type):
    monkeypatch.setenv(data.DATA_DIR_VARIABLE, str(vsr_folder))
    monkeypatch.delenv(data.IMAGE_DIR_VARIABLE, raising=False)
    task = f"vsr_{dataset_type}_heldout"
    held_out = load_splits(vsr_folder, dataset_type).held_out  # finetune's own held-out slice, its defaults
    assert len(held_out) == 6  # round(0.05 * 120)
    for doc_id, example in enumerate(held_out):
        row = vsr_row(task, doc_id)
        assert (row["image"], row["caption"], row["label"]) == (example.image.name, example.caption, example.label)
        document = _logged(doc_id)
        assert caption_of(task, document) == example.caption
        assert resolve_image(task, document) == (vsr_folder / "images" / example.image.name, "")
        pictures, missing = document_pictures(task, document)
        with Image.open(example.image) as opened:
            expected = np.asarray(opened.convert("RGB"))
        assert missing == "" and len(pictures) == 1 and np.array_equal(pictures[0], expected)
    assert vsr_row(task, len(held_out)) is None  # past the slice


def test_a_dev_task_indexes_its_split_and_a_group_has_no_rows(vsr_folder, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_VARIABLE, str(vsr_folder))
    dev = data.read_rows(vsr_folder / "splits" / "random" / "dev.jsonl")
    assert [vsr_row("vsr_random_dev", doc_id) for doc_id in range(len(dev))] == dev
    assert vsr_row("vsr_random", 0) is None  # a group
    assert vsr_row("whatsup_controlled_a", 0) is None  # another benchmark's task
    assert caption_of("vsr_random", _logged(3)) == "(caption unknown: doc 3)"
    path, why = resolve_image("vsr_random", _logged(3))
    assert path is None and why == "image name unknown (no input_media in the samples, no VSR row for this task)"
