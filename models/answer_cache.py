"""Answers kept as they are given, so that a killed evaluation resumes where it stopped (``answer_cache=``).

lmms-eval's ``--use_cache`` writes its cache only when a run completes: a run killed after hours keeps nothing. Here
every answered request is appended to a JSON-lines file at once (flushed after each batch), and a rerun of the same
command serves those answers and computes only the rest. A rerun gives the same results files as an uninterrupted
run, because an answer is only served to the request it was computed for:

- one folder per *run identity*: the ``--model`` name, every model argument but the cache's own, a fingerprint of the
  checkpoint's files (names, sizes, modification times), and the versions of this plugin, transformers and torch;
- one entry per *request*: the task, the document (its id and its JSON-able fields), the context and the generation
  settings.

A change to any of these computes afresh. Files: ``<root>/<model>-<digest>/answers.rank<R>.jsonl`` (one per data-
parallel rank; a rerun reads all of them) and ``identity.json`` (what the digest covers, for a reader). The root is
``answer_cache=FOLDER``, else ``$VSR_ANSWER_CACHE``, else ``~/.cache/vsr_attention_steering/answers``;
``answer_cache=none`` turns it off.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

CACHE_VARIABLE = "VSR_ANSWER_CACHE"
DEFAULT_ROOT = Path("~/.cache/vsr_attention_steering/answers")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".json", ".jinja", ".model", ".txt", ".tiktoken")


OFF = ("none", "off", "false")


def cache_root(argument: str | None) -> Path | None:
    """The cache's root folder: the ``answer_cache`` argument, else ``$VSR_ANSWER_CACHE``, else the default; None
    when either says ``none`` (no cache)."""
    chosen = str(argument).strip() if argument is not None else os.environ.get(CACHE_VARIABLE, "").strip()
    if chosen.lower() in OFF:
        return None
    return Path(chosen or DEFAULT_ROOT).expanduser()


def checkpoint_fingerprint(pretrained: str) -> list:
    """What identifies a checkpoint's content without reading it: for a folder, its files' names, sizes and
    modification times (a retrained checkpoint saved to the same path differs); for a hub id, the id and the snapshot
    folder of its cached config (the commit)."""
    folder = Path(pretrained).expanduser()
    if folder.is_dir():
        return sorted(
            [path.name, path.stat().st_size, path.stat().st_mtime_ns]
            for path in folder.iterdir()
            if path.is_file() and path.suffix in WEIGHT_SUFFIXES
        )
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(pretrained, "config.json")
    except Exception:  # an id the hub library cannot parse: the id alone
        cached = None
    return [pretrained, Path(cached).parent.name if isinstance(cached, str) else None]


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _json_fields(document: Any) -> dict:
    """A document's fields that JSON can hold exactly (images and other objects are left out)."""

    def plain(value: Any) -> bool:
        if isinstance(value, (str, int, float, bool)) or value is None:
            return True
        if isinstance(value, (list, tuple)):
            return all(plain(item) for item in value)
        if isinstance(value, dict):
            return all(isinstance(key, str) and plain(item) for key, item in value.items())
        return False

    if not isinstance(document, dict):
        return {}
    return {key: value for key, value in document.items() if plain(value)}


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Request:
    """One generate request as the cache keys it."""

    task: str
    doc_id: int
    context: str
    generation: dict
    document: Any

    def key(self) -> str:
        return _digest([self.task, self.doc_id, self.context, self.generation, _json_fields(self.document)])


class AnswerCache:
    """The answers of one run identity: served by request key, appended as they are computed."""

    def __init__(self, root: Path, model_name: str, model_args: dict, pretrained: str, rank: int) -> None:
        identity = {
            "model": model_name,
            "model_args": {key: str(value) for key, value in sorted(model_args.items())},
            "checkpoint": checkpoint_fingerprint(pretrained),
            "versions": {name: _version(name) for name in ("vsr-attention-steering", "transformers", "torch")},
        }
        self.folder = Path(root) / f"{model_name}-{_digest(identity)[:16]}"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / "identity.json").write_text(json.dumps(identity, indent=1) + "\n")
        except OSError as error:
            raise ValueError(
                f"answer_cache={root}: cannot write there ({error.strerror or error}); pass another folder, "
                f"or answer_cache=none to run without one"
            ) from None
        self.path = self.folder / f"answers.rank{rank}.jsonl"
        if self.path.is_file() and not self.path.read_bytes().endswith(b"\n"):  # a line cut short by a kill
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write("\n")
        self.answers: dict[str, str] = {}
        self.documents: set[tuple[str, int]] = set()
        for path in sorted(self.folder.glob("answers.rank*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # the last line of a killed process may be cut short
                    continue
                self.answers[entry["key"]] = entry["answer"]
                self.documents.add((entry["task"], int(entry["doc_id"])))

    def get(self, request: Request) -> str | None:
        return self.answers.get(request.key())

    def put(self, answered: list[tuple[Request, str]]) -> None:
        """Append one batch's answers and flush, so that a kill after this call loses none of them."""
        lines = []
        for request, answer in answered:
            key = request.key()
            self.answers[key] = answer
            self.documents.add((request.task, int(request.doc_id)))
            lines.append(json.dumps({"key": key, "task": request.task, "doc_id": request.doc_id, "answer": answer}))
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in lines))
            handle.flush()
