"""lmms-eval hooks for the VSR tasks (referenced from the YAML files with ``!function utils.X``).

lmms-eval executes this file by path, once per ``!function`` reference, so it
only wires lmms-eval to the real code in the ``vsr_tasks`` package.
"""

from __future__ import annotations

from PIL import Image

from local_tasks.images import open_rgb
from local_tasks.task import LocalRowsTask
from vsr_tasks import adaptvis_protocol, data, scoring
from vsr_tasks.categories import META_CATEGORIES, meta_category
from vsr_tasks.prompt import build_prompt
from vsr_tasks.rows import TaskRows


class VSRTask(LocalRowsTask):
    """VSR's rows: from ``$VSR_DATA_DIR/splits`` when it exists, else the copy shipped in ``vsr_tasks/annotations``."""

    def documents(self, dataset_kwargs: dict) -> list[dict]:
        return [_document(row) for row in TaskRows.from_config(dataset_kwargs, self.config.test_split).load()]


def _document(row: dict) -> dict:
    """Keep the fields the hooks and the analysis need, with stable types for Arrow."""
    return {
        "image": row["image"],
        "image_link": row.get("image_link") or "",
        "caption": row["caption"],
        "label": int(row["label"]),
        "relation": row["relation"],
        "meta_category": meta_category(row["relation"]),
        "subj": row.get("subj") or "",
        "obj": row.get("obj") or "",
    }


def vsr_doc_to_visual(doc: dict) -> list[Image.Image]:
    return [open_rgb(data.image_path(doc, data.image_dir()))]


def vsr_doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    return build_prompt(doc["caption"])


def vsr_doc_to_target(doc: dict) -> str:
    return "True" if doc["label"] == 1 else "False"


def vsr_process_results(doc: dict, results: list[str]) -> dict:
    record = scoring.score_record(results[0], doc["label"], doc["relation"], doc["meta_category"])
    record["caption"] = doc["caption"]  # the analysis reads the statement from the logged record
    metrics = {"accuracy": record, "f1_true": record, "unparseable_rate": record}
    metrics.update({f"accuracy_{category.lower()}": record for category in META_CATEGORIES})
    return metrics


def adaptvis_doc_to_visual(doc: dict) -> list[Image.Image]:
    return [adaptvis_protocol.prepare_image(image) for image in vsr_doc_to_visual(doc)]


def adaptvis_doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    return adaptvis_protocol.build_prompt(doc["caption"])


def adaptvis_process_results(doc: dict, results: list[str]) -> dict:
    record = adaptvis_protocol.score_record(results[0], doc["label"], doc["relation"], doc["meta_category"])
    record["caption"] = doc["caption"]
    return {"accuracy": record, "tpr_tnr_harmonic_mean": record, "f1_true": record, "unparseable_rate": record}


def vsr_aggregate_tpr_tnr_harmonic_mean(records: list[dict]) -> float:
    return adaptvis_protocol.tpr_tnr_harmonic_mean(records)


def vsr_aggregate_accuracy(records: list[dict]) -> float:
    return scoring.accuracy(records)


def vsr_aggregate_f1_true(records: list[dict]) -> float:
    return scoring.f1_true(records)


def vsr_aggregate_unparseable_rate(records: list[dict]) -> float:
    return scoring.unparseable_rate(records)


def _category_aggregation(category: str):
    def aggregate(records: list[dict]) -> float:
        return scoring.category_accuracy(records, category)

    aggregate.__name__ = f"vsr_aggregate_accuracy_{category.lower()}"
    return aggregate


# vsr_aggregate_accuracy_adjacency, ..._unallocated: one per meta-category, as the YAML's metric_list names them
globals().update({function.__name__: function for function in map(_category_aggregation, META_CATEGORIES)})
