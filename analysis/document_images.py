"""What a logged document showed the model: its images and, for VSR, its statement, found again after the run.

A samples file holds no pixels, and a VSR samples file written before the record carried the caption holds no
statement either, so the report's thumbnails and heatmaps and the viewer find them again here, all in one way: a VSR
document's image from the samples' ``input_media``, else from its task's row (the row the task file declares for that
doc_id, :mod:`vsr_tasks.rows`), with ``VSR_DATA_DIR`` / ``VSR_IMAGE_DIR``; any other task's images through its own
``doc_to_visual`` (:mod:`analysis.visuals`). What cannot be found comes back with the reason, to be shown, never raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from analysis.runs import Document
from analysis.visuals import task_images
from vsr_tasks import data
from vsr_tasks.rows import task_rows

NO_IMAGE = "the document has no image"


@lru_cache(maxsize=8)
def _task_rows(task: str, root: Path) -> tuple[dict, ...]:
    rows = task_rows(task)
    if rows is None:
        return ()
    try:
        return tuple(rows.load(root))
    except (data.VSRDataError, ValueError):
        return ()


def vsr_row(task: str, doc_id: int) -> dict | None:
    """The task's VSR row for a doc_id (doc_ids index the task's rows in order), if VSR_DATA_DIR is set."""
    try:
        root = data.data_dir()
    except data.VSRDataError:
        return None
    rows = _task_rows(task, root) if root is not None else ()
    return rows[doc_id] if 0 <= doc_id < len(rows) else None


def caption_of(task: str, document: Document) -> str:
    if document.caption:
        return document.caption
    row = vsr_row(task, document.doc_id)
    return row["caption"] if row else f"(caption unknown: doc {document.doc_id})"


def resolve_image(task: str, document: Document) -> tuple[Path | None, str]:
    """The document's image file, or None and why not (shown on the figure and in the report)."""
    name, link = document.image, document.image_link
    if not name:
        row = vsr_row(task, document.doc_id)
        if row is None:
            return None, "image name unknown (no input_media in the samples, no VSR row for this task)"
        name, link = row["image"], row.get("image_link")
    try:
        return data.image_path({"image": name, "image_link": link or ""}, data.image_dir()), ""
    except data.VSRDataError as error:
        return None, str(error)


def document_pictures(task: str, document: Document, include_path: Sequence[str] = ()) -> tuple[list[np.ndarray], str]:
    """The document's images and, when there are none, why: a VSR document's file (``input_media`` or its task's
    row), any other task's images through its own ``doc_to_visual``."""
    if document.vsr is not None:
        path, missing = resolve_image(task, document)
        return ([load_image(path)] if path is not None else []), missing
    images, why = task_images(task, [document.doc_id], include_path)
    pictures = [np.asarray(image) for image in images.get(document.doc_id, [])]
    return pictures, why or ("" if pictures else NO_IMAGE)


def load_image(path: Path | None) -> np.ndarray | None:
    if path is None:
        return None
    with Image.open(path) as opened:
        return np.asarray(opened.convert("RGB"))
