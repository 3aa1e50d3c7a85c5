"""Test data on disk: a VSR data folder with generated images, a colour-labelled VSR set, the prompts an evaluation feeds."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def evaluation_prompt(checkpoint: Path, caption: str, image: Path) -> tuple[str, Any]:
    """What an evaluation of a VSR document with ``caption`` feeds the model: (prompt text, input ids ``[N]``).

    Through the path lmms-eval takes: the task's ``doc_to_text`` and ``doc_to_visual``, then the baseline
    engine's ``prepare`` (images placed by ``families.turns``, the chat template, the processor).
    """
    from families.turns import images_first, render_user_turn
    from plugin.registered import Qwen3VLBaseline as Qwen3VL
    from vsr_tasks.utils import vsr_doc_to_text

    wrapper = Qwen3VL(pretrained=str(checkpoint), device="cpu")
    with Image.open(image) as opened:
        visual = [opened.convert("RGB")]
    context = vsr_doc_to_text({"caption": caption})
    batch = wrapper.engine.prepare([context], [visual], [0], ["vsr_random_dev"])
    text = render_user_turn(wrapper.engine.processor, images_first(context, visual).content)
    return text, batch.inputs["input_ids"][0]


def write_random_image(path: Path, rng: np.random.Generator, min_side: int = 48, max_side: int = 160) -> None:
    height, width = (int(v) for v in rng.integers(min_side, max_side, 2))
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)


def build_vsr_data_dir(root: Path, eval_rows: int = 16, train_rows: int = 64, seed: int = 0) -> Path:
    """A VSR_DATA_DIR as a user with only the images has it: random images for the first rows of each packaged split
    (``vsr_tasks/annotations``), no ``splits/`` folder."""
    from vsr_tasks.data import DATASET_TYPES, SPLITS, load_split

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    for dataset_type in DATASET_TYPES:
        for split in SPLITS:
            limit = train_rows if split == "train" else eval_rows
            for row in load_split(dataset_type, split, root)[:limit]:
                image = root / "images" / row["image"]
                if not image.exists():
                    write_random_image(image, rng)
    return root


def write_splits(root: Path) -> Path:
    """``root/splits/{random,zeroshot}/{train,dev,test}.jsonl``: the packaged split files, decompressed, as a VSR
    clone's ``data/`` holds them (for tests of a data folder with its own splits)."""
    from vsr_tasks.data import DATASET_TYPES, PACKAGED_ANNOTATIONS, SPLITS, split_path

    for dataset_type in DATASET_TYPES:
        for split in SPLITS:
            target = root / "splits" / dataset_type / f"{split}.jsonl"
            target.parent.mkdir(parents=True, exist_ok=True)
            with gzip.open(split_path(PACKAGED_ANNOTATIONS, dataset_type, split), "rb") as packed:
                target.write_bytes(packed.read())
    return root


CAPTION = "The cat is left of the dog."


def colour_vsr_set(root: Path, n_train: int, n_eval: int, seed: int = 0) -> Path:
    """A VSR-layout folder whose label is the image's colour (red: True, blue: False), captions all alike."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "splits" / "random").mkdir(parents=True)
    for split, n in (("train", n_train), ("dev", n_eval), ("test", n_eval)):
        rows = []
        for i in range(n):
            label = i % 2
            colour = np.array([200, 30, 30] if label else [30, 30, 200])
            pixels = np.clip(colour + rng.integers(-20, 20, (64, 64, 3)), 0, 255).astype(np.uint8)
            name = f"{split}_{i:04d}.png"
            Image.fromarray(pixels).save(root / "images" / name)
            rows.append({"image": name, "image_link": "", "caption": CAPTION, "label": label, "relation": "left of"})
        (root / "splits" / "random" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root
