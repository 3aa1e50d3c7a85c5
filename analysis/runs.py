"""Reading lmms-eval output folders into runs: one run = one model + model_args, its tasks and documents.

lmms-eval 0.7.3 writes ``OUTPUT/<model>/<timestamp>_results.json`` and, with ``--log_samples``,
``<timestamp>_samples_<task>.jsonl`` beside it; one folder may hold several evaluations. Every task is read the
same way: per document its ``doc_id``, target, filtered answer, input text, input media, and every metric's
per-document value exactly as the task's ``process_results`` logged it (a number or a record), keyed like the
results JSON (``metric,filter``). A VSR task is the same documents seen through VSR's record (every VSR metric
holds ``{prediction, label, correct, relation, category}``): the properties of :class:`Document`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS_SUFFIX = "_results.json"
NOT_METRICS = ("alias", "samples")
LOG_SAMPLES_FIX = "rerun lmms-eval with --log_samples (the analysis reads each document's answer and score)"
VSR_METRIC = "accuracy,none"


class RunError(RuntimeError):
    """A RUN argument points at nothing lmms-eval wrote; the message says what was looked for."""


@dataclass
class Document:
    """One evaluated document, as its samples line logged it."""

    doc_id: int
    values: dict[str, Any]  # "metric,filter" -> the per-document value process_results logged
    response: str = ""  # the filtered answer (the first filter's)
    target: Any = None
    input: str = ""  # the prompt text the task wrote
    media: list = field(default_factory=list)  # input_media (VSR: the image name and its link)

    def value(self, key: str) -> Any:
        return self.values.get(key)

    # ---- VSR's record, under every VSR metric
    @property
    def vsr(self) -> dict | None:
        record = self.values.get(VSR_METRIC)
        return record if isinstance(record, dict) and "correct" in record else None

    @property
    def record(self) -> dict:
        """The record vsr_tasks.scoring reads."""
        vsr = self.vsr or {}
        return {key: vsr.get(key) for key in ("prediction", "label", "correct", "relation", "category")}

    @property
    def correct(self) -> bool:
        return bool((self.vsr or {}).get("correct"))

    @property
    def prediction(self) -> bool | None:
        return (self.vsr or {}).get("prediction")

    @property
    def label(self) -> int:
        return int((self.vsr or {}).get("label", -1))

    @property
    def relation(self) -> str:
        return str((self.vsr or {}).get("relation", ""))

    @property
    def category(self) -> str:
        return str((self.vsr or {}).get("category", ""))

    @property
    def caption(self) -> str | None:
        """The statement, as VSR's record logged it (None in logs written before the record carried it)."""
        caption = (self.vsr or {}).get("caption")
        return str(caption) if caption is not None else None

    @property
    def image(self) -> str | None:
        return self.media[0] if len(self.media) > 0 and isinstance(self.media[0], str) else None

    @property
    def image_link(self) -> str | None:
        return self.media[1] if len(self.media) > 1 and isinstance(self.media[1], str) else None


@dataclass
class TaskResult:
    """One task of a run: the documents (by doc_id), the results JSON's metrics and the task's config."""

    task: str
    documents: dict[int, Document]
    metrics: dict[str, object]  # the results JSON's results[task]
    samples_file: Path
    config: dict = field(default_factory=dict)  # the results JSON's configs[task]

    @property
    def keys(self) -> list[str]:
        """The task's metric keys (``metric,filter``) in the results JSON's order, its primary one first."""
        return metric_keys(self.metrics)

    @property
    def is_vsr(self) -> bool:
        return bool(self.documents) and all(d.vsr is not None for d in self.documents.values())

    def ordered(self, doc_ids: list[int] | None = None) -> list[Document]:
        ids = sorted(self.documents) if doc_ids is None else doc_ids
        return [self.documents[i] for i in ids]


def metric_keys(metrics: dict[str, object]) -> list[str]:
    """``metric,filter`` keys of a results JSON entry, without the standard errors and the alias."""
    keys = []
    for key in metrics:
        metric, _, _ = key.partition(",")
        if metric in NOT_METRICS or "_stderr" in metric or "," not in key:
            continue
        keys.append(key)
    return keys


@dataclass
class Run:
    """A model configuration and everything it was evaluated on."""

    model: str
    model_args: str
    args: dict[str, str]
    results_files: list[Path] = field(default_factory=list)
    tasks: dict[str, TaskResult] = field(default_factory=dict)
    skipped_tasks: dict[str, str] = field(default_factory=dict)  # task -> why it is not analysed
    notes: list[str] = field(default_factory=list)
    label: str = ""
    source: str = ""  # the RUN argument as typed

    @property
    def key(self) -> tuple[str, str]:
        return self.model, canonical_args(self.args)


def parse_model_args(text: str) -> dict[str, str]:
    """``a=1,layers=[1,2],b="x,y"`` -> dict, splitting on commas outside brackets and quotes (as lmms-eval)."""
    parts, depth, quote, current = [], 0, "", []
    for char in text or "":
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[({":
            depth += 1
        elif char in "])}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    args = {}
    for part in parts:
        if "=" in part:
            key, value = part.split("=", 1)
            args[key.strip()] = value.strip()
    return args


def canonical_args(args: dict[str, str]) -> str:
    """Order-independent model_args: evaluations of one configuration merge, any differing argument splits them."""
    return ",".join(f"{k}={v}" for k, v in sorted(args.items()))


def results_files(path: Path) -> list[Path]:
    """The results JSONs a RUN argument names: a results file, a samples file, or a folder searched recursively."""
    path = Path(path)
    if path.is_file():
        if path.name.endswith(RESULTS_SUFFIX):
            return [path]
        if "_samples_" in path.name:
            candidate = path.with_name(path.name.split("_samples_", 1)[0] + RESULTS_SUFFIX)
            if candidate.is_file():
                return [candidate]
            raise RunError(f"{path}: no results file {candidate.name} beside this samples file")
        raise RunError(f"{path}: not an lmms-eval results file (*{RESULTS_SUFFIX}) or samples file")
    if path.is_dir():
        found = sorted(path.rglob(f"*{RESULTS_SUFFIX}"))
        if not found:
            raise RunError(f"{path}: no *{RESULTS_SUFFIX} in this folder (was lmms-eval run with --output_path here?)")
        return found
    raise RunError(f"{path}: no such file or folder")


def _response(sample: dict) -> str:
    response = sample.get("filtered_resps")
    if isinstance(response, list):
        response = response[0] if response else ""
    return str(response if response is not None else "")


def read_samples(path: Path, keys: list[str]) -> dict[int, Document]:
    """The documents of a samples file, each with the per-document value of every metric key.

    lmms-eval writes one line per document and filter, the filters one after the other: the k-th line of a
    doc_id belongs to the k-th filter of ``keys``.
    """
    filters = list(dict.fromkeys(key.partition(",")[2] for key in keys)) or ["none"]
    documents: dict[int, Document] = {}
    seen: dict[int, int] = {}
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            sample = json.loads(line)
            doc_id = int(sample["doc_id"])
            occurrence = seen.get(doc_id, 0)
            seen[doc_id] = occurrence + 1
            if occurrence >= len(filters):
                continue
            which = filters[occurrence]
            values = {key: sample.get(key.partition(",")[0]) for key in keys if key.partition(",")[2] == which}
            if occurrence == 0:
                documents[doc_id] = Document(
                    doc_id=doc_id,
                    values=values,
                    response=_response(sample),
                    target=sample.get("target"),
                    input=str(sample.get("input") or ""),
                    media=list(sample.get("input_media") or []),
                )
            else:
                documents[doc_id].values.update(values)
    return documents


def read_results_file(path: Path) -> Run:
    """One evaluation: its config, and each task's documents from the samples files beside it."""
    try:
        results = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise RunError(f"{path}: not valid JSON ({error.msg})") from None
    config = results.get("config") or {}
    model_args = config.get("model_args") or ""
    if isinstance(model_args, dict):
        model_args = ",".join(f"{k}={v}" for k, v in model_args.items())
    run = Run(
        model=str(config.get("model", "unknown")),
        model_args=model_args,
        args=parse_model_args(model_args),
        results_files=[Path(path)],
    )
    prefix = Path(path).name[: -len(RESULTS_SUFFIX)]
    metrics = results.get("results") or {}
    group_subtasks = results.get("group_subtasks") or {}
    samples = {
        p.name.split("_samples_", 1)[1][: -len(".jsonl")]: p
        for p in Path(path).parent.glob(f"{prefix}_samples_*.jsonl")
    }
    configs = results.get("configs") or {}
    for task in sorted(set(metrics) | set(samples)):
        if task not in samples:
            if not group_subtasks.get(task):  # a group's subtasks have their own samples files
                run.skipped_tasks[task] = f"no samples file ({LOG_SAMPLES_FIX})"
            continue
        keys = metric_keys(dict(metrics.get(task) or {}))
        documents = read_samples(samples[task], keys)
        if not documents:
            run.skipped_tasks[task] = "its samples file holds no document"
            continue
        run.tasks[task] = TaskResult(
            task, documents, dict(metrics.get(task) or {}), samples[task], configs.get(task, {})
        )
    if not samples:
        raise RunError(f"{path}: lmms-eval wrote no samples file beside these results; {LOG_SAMPLES_FIX}")
    return run


def load_runs(paths: list[str | Path]) -> list[Run]:
    """Runs from RUN arguments; evaluations with the same model and model_args merge (latest wins per task)."""
    runs: dict[tuple[str, str], Run] = {}
    for source in paths:
        for results_path in results_files(Path(source)):
            part = read_results_file(results_path)
            part.source = str(source)
            existing = runs.get(part.key)
            if existing is None:
                runs[part.key] = part
                continue
            existing.results_files.append(results_path)
            for task, result in part.tasks.items():
                if task in existing.tasks:
                    existing.notes.append(
                        f"{task}: evaluated twice with the same model_args; {results_path} is used, "
                        f"{existing.tasks[task].samples_file} ignored"
                    )
                existing.tasks[task] = result
                existing.skipped_tasks.pop(task, None)
            for task, why in part.skipped_tasks.items():
                if task not in existing.tasks:
                    existing.skipped_tasks[task] = why
            existing.notes.extend(part.notes)
    ordered = list(runs.values())
    assign_labels(ordered)
    return ordered


def assign_labels(runs: list[Run]) -> None:
    """Short unique names: the model, plus the model_args that tell its runs of that model apart."""
    by_model: dict[str, list[Run]] = {}
    for run in runs:
        by_model.setdefault(run.model, []).append(run)
    seen: dict[str, int] = {}
    for model, group in by_model.items():
        keys = sorted({k for run in group for k in run.args})
        differing = [k for k in keys if len({run.args.get(k) for run in group}) > 1]
        # where the log folder is, is noise in a label unless nothing else tells the runs apart
        differing = [k for k in differing if k != "attention_log"] or differing
        for run in group:
            shown = [f"{k}={_short(run.args.get(k, '-'))}" for k in differing]
            label = f"{model} ({', '.join(shown)})" if shown else model
            count = seen.get(label, 0)
            seen[label] = count + 1
            run.label = label if count == 0 else f"{label} #{count + 1}"


def _short(value: str) -> str:
    """A path-like value by its last component, so labels stay readable."""
    return Path(value).name if "/" in value else value
