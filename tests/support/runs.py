"""lmms-eval output folders and attention logs written by hand, for the analysis tests: exact, known answers.

The writers follow lmms-eval 0.7.3's files (``<timestamp>_results.json`` + ``<timestamp>_samples_<task>.jsonl``
under ``OUTPUT/<model>/``) and docs/ATTENTION_LOG.md exactly, so the analysis can be tested before (and
independently of) the models that write them; ``tests/unit/analysis/test_runs.py`` checks them against the readers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

RELATIONS = [("left of", "Projective"), ("near", "Proximity"), ("on", "Topological"), ("facing", "Orientation")]


def make_documents(labels: list[int], predictions: list[bool | None]) -> list[dict]:
    """VSR sample records for doc_ids 0..n-1, relations cycling through RELATIONS."""
    documents = []
    for doc_id, (label, prediction) in enumerate(zip(labels, predictions)):
        relation, category = RELATIONS[doc_id % len(RELATIONS)]
        documents.append(
            {
                "doc_id": doc_id,
                "label": label,
                "prediction": prediction,
                "relation": relation,
                "category": category,
                "image": f"{doc_id:012d}.jpg",
                "caption": f"The cat number {doc_id} is {relation} the dog.",
            }
        )
    return documents


def _f1_true(documents: list[dict]) -> float:
    """F1 of the True class, counted by hand (an unparseable answer is "not True")."""
    tp = sum(d["prediction"] is True and d["label"] == 1 for d in documents)
    fp = sum(d["prediction"] is True and d["label"] == 0 for d in documents)
    fn = sum(d["prediction"] is not True and d["label"] == 1 for d in documents)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def write_run(
    output_path: Path,
    model: str,
    model_args: str,
    tasks: dict[str, list[dict]],
    timestamp: str = "20260101_000000",
) -> Path:
    """An lmms-eval --output_path folder for one evaluation; returns the results JSON's path."""
    folder = Path(output_path) / "synthetic__checkpoint"
    folder.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    for task, documents in tasks.items():
        lines = []
        correct_flags = []
        for d in documents:
            correct = d["prediction"] is not None and d["prediction"] == bool(d["label"])
            correct_flags.append(correct)
            record = {
                "prediction": d["prediction"],
                "label": d["label"],
                "correct": correct,
                "relation": d["relation"],
                "category": d["category"],
                "caption": d["caption"],
            }
            answer = {True: "True", False: "False", None: "maybe"}[d["prediction"]]
            lines.append(
                {
                    "doc_id": d["doc_id"],
                    "target": "True" if d["label"] else "False",
                    "filtered_resps": answer,
                    "input_media": [d["image"], f"http://images.cocodataset.org/train2017/{d['image']}"],
                    "accuracy": record,
                    "f1_true": record,
                    "unparseable_rate": record,
                    "input": f"Look at the image.\nStatement: {d['caption']}\nAnswer with exactly one word: True or False.",
                }
            )
        (folder / f"{timestamp}_samples_{task}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        results[task] = {
            "alias": task,
            "accuracy,none": sum(correct_flags) / len(correct_flags),
            "accuracy_stderr,none": "N/A",
            "f1_true,none": _f1_true(documents),
            "unparseable_rate,none": sum(d["prediction"] is None for d in documents) / len(documents),
        }
    payload = {
        "results": results,
        "group_subtasks": {task: [] for task in tasks},
        "config": {"model": model, "model_args": model_args, "batch_size": 1},
        "n-samples": {task: {"original": 1097, "effective": len(docs)} for task, docs in tasks.items()},
    }
    path = folder / f"{timestamp}_results.json"
    path.write_text(json.dumps(payload))
    return path


def write_attention_log(
    folder: Path,
    model: str,
    task: str,
    doc_ids: list[int],
    num_layers: int = 4,
    grid: tuple[int, int] = (3, 4),
    image_share: float = 0.3,
    before: bool = False,
    vea: bool = False,
    rank: int = 0,
) -> Path:
    """A log in the docs/ATTENTION_LOG.md format whose image mass per layer is ``image_share * (layer + 1) / L``.

    The map of layer l is uniform except a peak at token (doc_id % grid_h, doc_id % grid_w), and sums to
    that layer's image mass, as a real last-row map over the image tokens does.
    """
    folder = Path(folder)
    (folder / "maps" / task).mkdir(parents=True, exist_ok=True)
    grid_h, grid_w = grid
    with (folder / f"records.rank{rank}.jsonl").open("a") as handle:
        for doc_id in doc_ids:
            image_mass = [image_share * (layer + 1) / num_layers for layer in range(num_layers)]
            maps = np.ones((num_layers, grid_h, grid_w))
            maps[:, doc_id % grid_h, doc_id % grid_w] = 5.0
            maps = maps / maps.sum(axis=(1, 2), keepdims=True) * np.asarray(image_mass)[:, None, None]
            arrays = {"after_0": maps.astype(np.float16)}
            image_before = text_before = None
            if before:
                arrays["before_0"] = (maps / 2).astype(np.float16)
                image_before = [m / 2 for m in image_mass]
                text_before = [1 - m for m in image_before]
            if vea:
                arrays["evidence_0"] = maps.mean(axis=0).astype(np.float16)
                arrays["highlighted_0"] = np.full((grid_h * 32, grid_w * 32, 3), 90, dtype=np.uint8)
            maps_file = f"maps/{task}/{doc_id}.npz"
            np.savez(folder / maps_file, **arrays)
            record = {
                "task": task,
                "doc_id": doc_id,
                "model": model,
                "model_args": {},
                "num_layers": num_layers,
                "image_grids": [[grid_h, grid_w]],
                "image_mass": image_mass,
                "text_mass": [1 - m for m in image_mass],
                "image_mass_before": image_before,
                "text_mass_before": text_before,
                "decision": {"confidence": 0.5, "alpha": 0.2} if before else {},
                "answer": "True",
                "maps_file": maps_file,
            }
            handle.write(json.dumps(record) + "\n")
    return folder


def write_images(folder: Path, documents: list[dict]) -> Path:
    """Solid-colour images named as the documents' ``input_media`` (a flat VSR_IMAGE_DIR)."""
    folder.mkdir(parents=True, exist_ok=True)
    for d in documents:
        Image.new("RGB", (128, 96), (40 + 20 * d["doc_id"] % 200, 120, 160)).save(folder / d["image"])
    return folder
