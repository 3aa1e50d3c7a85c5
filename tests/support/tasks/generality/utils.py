"""Test-only tasks: prompts with two images and with none, to show qwen3vl is not VSR-specific."""

import numpy as np
from PIL import Image


def two_images(doc):
    rng = np.random.default_rng(doc["id"])
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in doc["sizes"]]


def no_images(doc):
    return []


def question(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]


def answer_length(doc, results):
    return {"answer_length": len(results[0])}
