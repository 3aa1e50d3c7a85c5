"""Answering every document under every setting, batch by batch, resumable, one share of the batches per process.

Batches are lmms-eval's own (``plugin.requests``, as the lmms-eval models batch), so a setting's answers equal, exactly,
those of an ``lmms-eval`` run of the model with that setting and the same ``batch_size``. Each batch is answered for all
settings by the engine's ``answer`` and its raw answers are appended to ``raw_answers.rank{R}.jsonl`` (flushed
per batch: an interrupted sweep keeps every finished batch). A rerun skips the batches already answered; under
``accelerate launch`` process R answers batches R, R + W, ... and rank 0 merges.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from models.batch import truncate_at_stops
from models.engine import Engine
from models.host import ONE_PROCESS, Process
from plugin.requests import RequestBatches

RAW_PATTERN = "raw_answers.rank*.jsonl"


def read_raw_answers(out: Path) -> dict[tuple[int, int], str]:
    """``{(setting index, doc_id): raw answer}`` from every rank's file (a torn last line is ignored)."""
    answers: dict[tuple[int, int], str] = {}
    for path in sorted(out.glob(RAW_PATTERN)):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line a crash cut short: that batch is answered again
            answers[(record["setting"], record["doc_id"])] = record["answer"]
    return answers


def answer_all(
    engine: Engine,
    batches: RequestBatches,
    requests: Sequence,
    points: Sequence,
    out: Path,
    process: Process = ONE_PROCESS,
    max_batches: int | None = None,
) -> bool:
    """Answer ``process``'s share of the batches for every setting in ``points`` (the method's parameter objects; the
    baseline: ``[None]``); True when all are done.

    ``max_batches``: answer at most this many more batches, then stop (a time-limited queue); rerun to continue.
    """
    rank, world = process.rank, process.world_size
    done = read_raw_answers(out)
    _, chunks = batches.chunks(list(requests))
    mine = [chunk for index, chunk in enumerate(chunks) if index % world == rank]
    remaining = [chunk for chunk in mine if not all((s, args[3]) in done for args in chunk for s in range(len(points)))]
    documents = sum(len(chunk) for chunk in remaining)
    progress = tqdm(total=documents, disable=rank != 0, desc=f"sweep: {len(points)} settings", unit="doc")
    path = out / f"raw_answers.rank{rank}.jsonl"
    answered = 0
    with path.open("a", encoding="utf-8") as handle:
        for chunk in remaining:
            if max_batches is not None and answered >= max_batches:
                break
            start = time.perf_counter()
            batch = batches.prepare(chunk)
            settings = batches.settings(chunk)
            responses = engine.answer(batch, settings, list(points), share_neutral=True)
            lines = []
            for index, response in enumerate(responses):
                for doc_id, text in zip(batch.doc_ids, response.texts):
                    answer = truncate_at_stops(text, settings.until)
                    lines.append(json.dumps({"setting": index, "doc_id": int(doc_id), "answer": answer}))
            handle.write("".join(line + "\n" for line in lines))
            handle.flush()
            answered += 1
            progress.set_postfix_str(f"{time.perf_counter() - start:.1f}s/batch")
            progress.update(len(chunk))
    progress.close()
    return answered == len(remaining)
