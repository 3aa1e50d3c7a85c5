"""Batches of VSR documents for the shared-prefix and half-precision tests."""

from __future__ import annotations

import json

from PIL import Image

from vsr_tasks.prompt import build_prompt

SIZES = [(64, 64), (96, 128), (128, 64), (64, 96)]  # (height, width): a different token grid per image


def _dev_rows(data) -> dict[str, list[dict]]:
    rows = [json.loads(line) for line in (data / "splits" / "random" / "dev.jsonl").read_text().splitlines()]
    by_relation: dict[str, list[dict]] = {}
    for row in rows:
        by_relation.setdefault(row["relation"], []).append(row)
    return by_relation


def _image(data, row, size) -> Image.Image:
    with Image.open(data / "images" / row["image"]) as image:
        return image.convert("RGB").resize((size[1], size[0]))


def documents(data) -> list[tuple[str, list[Image.Image]]]:
    """Four prompts: unsure (near), sure (left of), two images (right of), text only."""
    rows = _dev_rows(data)
    near, left, right = rows["near"][0], rows["left of"][0], rows["right of"][0]
    return [
        (build_prompt(near["caption"]), [_image(data, near, SIZES[0])]),
        (build_prompt(left["caption"]), [_image(data, left, SIZES[1])]),
        (build_prompt(right["caption"]), [_image(data, right, SIZES[2]), _image(data, near, SIZES[3])]),
        (build_prompt(near["caption"]), []),
    ]


def batch_of(wrapper, docs):
    contexts, visuals = zip(*docs)
    return wrapper.engine.prepare(list(contexts), list(visuals), list(range(len(docs))), ["unit"] * len(docs))
