"""VSR's annotation files ship in the package: byte for byte the source's, read whenever VSR_DATA_DIR has no splits/;
a data folder with its own splits/ wins; an image is read in full or refused by name."""

from __future__ import annotations

import gzip
import hashlib
import json

import lmms_eval.models  # noqa: F401  (loads our entry point, which registers the task folder)
import numpy as np
import pytest
from lmms_eval.tasks import TaskManager
from PIL import Image

from local_tasks.images import ImageFileError, open_rgb
from tests.support.data import write_splits
from vsr_tasks.data import DATASET_TYPES, PACKAGED_ANNOTATIONS, SPLITS, VSRDataError, load_split, split_path

ROWS = {("random", "train"): 7680, ("random", "dev"): 1097, ("random", "test"): 2195,
        ("zeroshot", "train"): 3489, ("zeroshot", "dev"): 340, ("zeroshot", "test"): 1222}  # fmt: skip


def test_the_packaged_files_are_the_sources_byte_for_byte():
    """SHA256SUMS lists the digests of VSR's files at the commit the README names; the packaged copies decompress to
    exactly those bytes, with the row counts VSR publishes."""
    listed = {}
    for line in (PACKAGED_ANNOTATIONS / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        listed[name] = digest
    assert len(listed) == 7
    for dataset_type in DATASET_TYPES:
        for split in SPLITS:
            packed = split_path(PACKAGED_ANNOTATIONS, dataset_type, split)
            assert packed.name == f"{split}.jsonl.gz"
            with gzip.open(packed, "rb") as handle:
                content = handle.read()
            assert hashlib.sha256(content).hexdigest() == listed[f"splits/{dataset_type}/{split}.jsonl"]
            assert content.count(b"\n") == ROWS[dataset_type, split]
            assert len(load_split(dataset_type, split, PACKAGED_ANNOTATIONS)) == ROWS[dataset_type, split]
    table = (PACKAGED_ANNOTATIONS / "rel_meta_category_dict.txt").read_bytes()
    assert hashlib.sha256(table).hexdigest() == listed["rel_meta_category_dict.txt"]
    notice = (PACKAGED_ANNOTATIONS / "README.md").read_text()
    assert "b27a0af0ee1462d2b6b92c8c83e869d9254a241a" in notice and "@article{Liu2022VisualSR" in notice
    assert (PACKAGED_ANNOTATIONS / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_without_a_data_folder_the_rows_are_the_packaged_ones(monkeypatch):
    monkeypatch.delenv("VSR_DATA_DIR", raising=False)
    first = load_split("zeroshot", "dev")[0]
    assert first["caption"] == "The dog is on the surfboard."


def test_a_data_folder_with_images_only_reads_the_packaged_rows(monkeypatch, vsr_data_dir):
    assert not (vsr_data_dir / "splits").exists()
    monkeypatch.setenv("VSR_DATA_DIR", str(vsr_data_dir))
    task = TaskManager().load_task_or_group(["vsr_random_dev"])["vsr_random_dev"]
    assert len(task.test_docs()) == ROWS["random", "dev"]
    assert task.doc_to_visual(task.test_docs()[0])[0].mode == "RGB"


def test_a_data_folder_with_its_own_splits_wins(monkeypatch, tmp_path):
    data = write_splits(tmp_path / "data")
    dev = data / "splits" / "random" / "dev.jsonl"
    rows = [json.loads(line) for line in dev.read_text().splitlines()[:3]]
    rows[0]["caption"] = "The cat is left of the dog."
    dev.write_text("".join(json.dumps(row) + "\n" for row in rows))
    monkeypatch.setenv("VSR_DATA_DIR", str(data))
    task = TaskManager().load_task_or_group(["vsr_random_dev"])["vsr_random_dev"]
    assert [doc["caption"] for doc in task.test_docs()] == [row["caption"] for row in rows]


def test_no_image_folder_names_both_variables(monkeypatch):
    monkeypatch.delenv("VSR_DATA_DIR", raising=False)
    monkeypatch.delenv("VSR_IMAGE_DIR", raising=False)
    task = TaskManager().load_task_or_group(["vsr_random_dev"])["vsr_random_dev"]
    with pytest.raises(VSRDataError, match="VSR_DATA_DIR is not set, nor VSR_IMAGE_DIR") as error:
        task.doc_to_visual(task.test_docs()[0])
    assert "export VSR_DATA_DIR=" in str(error.value)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_truncated_image_is_refused_naming_the_file(monkeypatch, tmp_path, suffix):
    """lmms-eval turns on PIL's LOAD_TRUNCATED_IMAGES (grey padding, no error); our tasks still refuse the file."""
    from PIL import ImageFile

    assert ImageFile.LOAD_TRUNCATED_IMAGES  # lmms-eval set it when it was imported
    monkeypatch.delenv("VSR_DATA_DIR", raising=False)
    images = tmp_path / "images"
    images.mkdir()
    monkeypatch.setenv("VSR_IMAGE_DIR", str(images))
    task = TaskManager().load_task_or_group(["vsr_random_dev"])["vsr_random_dev"]
    doc = task.test_docs()[0]
    whole = images / "whole"
    pixels = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(whole.with_suffix(suffix))
    data = whole.with_suffix(suffix).read_bytes()
    (images / doc["image"]).write_bytes(data[: len(data) // 2])
    with Image.open(images / doc["image"]) as lenient:  # what PIL does under lmms-eval's setting: no error
        lenient.load()
    with pytest.raises(ImageFileError, match="is truncated or corrupt") as error:
        task.doc_to_visual(doc)
    assert str(images / doc["image"]) in str(error.value)
    assert ImageFile.LOAD_TRUNCATED_IMAGES  # and the setting is left as lmms-eval put it
    (images / doc["image"]).write_bytes(data)
    assert np.array_equal(np.asarray(task.doc_to_visual(doc)[0]), np.asarray(open_rgb(whole.with_suffix(suffix))))
