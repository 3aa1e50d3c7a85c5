"""The AdaptVis paper's VSR protocol (shiqichen17/AdaptVis), beside ours: its prompt, its split, its answer check and
its "F1".

- Prompt (``model_zoo/llava15.py``): "Determine whether the description about the spatial relationship is correct or
  not. Answer with yes or no: <caption>" (LLaVA's ``USER: ... Assistant:`` turn is the chat template's job here).
- Split: VSR zeroshot **test**, parted as every AdaptVis dataset is (``local_tasks.adaptvis_split``): a seeded fifth
  for tuning, the other four fifths evaluated with ``TEST_MODE=True``.
- Image (``dataset_zoo/aro_datasets.py:105``, ``VSR.__getitem__``): every image resized to 2300 x 4096 (width x
  height) before the processor, which then takes the centre square of that stretched image (LLaVA-1.5: its middle
  56% of the height, the full width).
- Answer check: a True caption is right when ``Yes`` is in the answer, a False one when ``No`` is (case-sensitive).
- "F1": the harmonic mean of the true-positive rate TP / (TP + FN) and the true-negative rate TN / (TN + FP) (their
  code calls the two "precision" and "recall"); named ``tpr_tnr_harmonic_mean`` here, since it is not the F1 of a
  class (that is ``f1_true``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

IMAGE_SIZE = (2300, 4096)  # (width, height): shiqichen17/AdaptVis 3b41399 dataset_zoo/aro_datasets.py:105
PROMPT = "Determine whether the description about the spatial relationship is correct or not. Answer with yes or no: "


def build_prompt(caption: str) -> str:
    return PROMPT + caption


def prepare_image(image: Any) -> Any:
    """The image as AdaptVis feeds it to the processor: resized to :data:`IMAGE_SIZE` (PIL's default filter, as
    theirs)."""
    return image.resize(IMAGE_SIZE)


def score_record(answer: str, label: int, relation: str, category: str) -> dict:
    """The record VSR's metrics read, judged by AdaptVis' check."""
    correct = ("Yes" in answer) if int(label) == 1 else ("No" in answer)
    prediction = True if "Yes" in answer else False if "No" in answer else None
    return {"prediction": prediction, "label": int(label), "correct": bool(correct), "relation": relation,
            "category": category}  # fmt: skip


def tpr_tnr_harmonic_mean(records: Iterable[Mapping]) -> float:
    """2 TPR TNR / (TPR + TNR): AdaptVis' "F1" (0 when either rate is 0 or a class is absent)."""
    records = list(records)
    positives = [r for r in records if int(r["label"]) == 1]
    negatives = [r for r in records if int(r["label"]) == 0]
    if not positives or not negatives:
        return 0.0
    tpr = sum(bool(r["correct"]) for r in positives) / len(positives)
    tnr = sum(bool(r["correct"]) for r in negatives) / len(negatives)
    return 2 * tpr * tnr / (tpr + tnr) if tpr + tnr else 0.0
