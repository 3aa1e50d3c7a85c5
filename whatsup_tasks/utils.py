"""lmms-eval hooks for the WhatsUp tasks (referenced from the YAML files with ``!function utils.X``).

lmms-eval executes this file by path, once per ``!function`` reference, so it only wires lmms-eval to the real code
in the ``whatsup_tasks`` package.
"""

from __future__ import annotations

from PIL import Image

from local_tasks.adaptvis_split import part_indices, task_lineage
from local_tasks.images import open_rgb
from local_tasks.task import LocalRowsTask
from whatsup_tasks import data, scoring
from whatsup_tasks.prompt import adaptvis_questions, build_question, prompts_dir
from whatsup_tasks.subsets import SUBSETS


class WhatsUpTask(LocalRowsTask):
    """Documents from ``$WHATSUP_DATA_DIR`` (the official files; nothing on a hub); a part's task (``adaptvis_part``:
    AdaptVis' tuning fifth or the test rest, ``local_tasks.adaptvis_split``) keeps its rows of the whole subset."""

    def documents(self, dataset_kwargs: dict) -> list[dict]:
        task = task_lineage(self.config.task)[-1]  # the whole subset's task
        documents = data.load_documents(task)
        subset = SUBSETS[task]
        folder = prompts_dir()
        theirs = adaptvis_questions(folder, subset, len(documents)) if folder is not None else None
        for index, document in enumerate(documents):
            if theirs is not None:
                document["question"] = theirs[index]
            else:
                document["question"] = build_question(document["subject"], document["object"] or None, subset)
            document["subset"] = task
        if "adaptvis_part" in dataset_kwargs:  # after the questions: AdaptVis' prompt files are row for row
            documents = [documents[i] for i in part_indices(len(documents), dataset_kwargs["adaptvis_part"])]
        return documents


def whatsup_doc_to_visual(doc: dict) -> list[Image.Image]:
    return [open_rgb(doc["image"])]


def whatsup_doc_to_text(doc: dict) -> str:
    return doc["question"]


def whatsup_doc_to_target(doc: dict) -> str:
    return doc["relation"]


def whatsup_process_results(doc: dict, results: list[str]) -> dict:
    answer = results[0] if results else ""
    options = SUBSETS[doc["subset"]].options
    record = {
        "correct": scoring.is_correct(answer, doc["relation"]),
        "relation": doc["relation"],
        "prediction": scoring.predicted_option(answer, options),
    }
    return {"accuracy": record, **{f"accuracy_{relation}": record for relation in options}}


def whatsup_aggregate_accuracy(records: list[dict]) -> float:
    return scoring.accuracy(records)


def _per_relation(relation: str):
    def aggregate(records: list[dict]) -> float:
        return scoring.accuracy(records, relation)

    aggregate.__name__ = f"whatsup_aggregate_accuracy_{relation}"
    return aggregate


whatsup_aggregate_accuracy_left = _per_relation("left")
whatsup_aggregate_accuracy_right = _per_relation("right")
whatsup_aggregate_accuracy_on = _per_relation("on")
whatsup_aggregate_accuracy_under = _per_relation("under")
whatsup_aggregate_accuracy_front = _per_relation("front")
whatsup_aggregate_accuracy_behind = _per_relation("behind")
whatsup_aggregate_accuracy_top = _per_relation("top")
whatsup_aggregate_accuracy_bottom = _per_relation("bottom")
whatsup_aggregate_accuracy_above = _per_relation("above")
whatsup_aggregate_accuracy_below = _per_relation("below")
