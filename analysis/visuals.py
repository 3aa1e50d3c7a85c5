"""A task's images for a few documents, for the report's thumbnails and the viewer: through lmms-eval's own
``doc_to_visual`` on the task's documents (the samples file holds no pixels). Loading a task loads its dataset: a
local one (parquet, ``VSR_DATA_DIR``) always works, a hub one needs its cache or the network; when it cannot be
loaded the reason is returned and shown instead of the pictures."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

from PIL import Image

THUMBNAIL_SIDE = 160


@lru_cache(maxsize=8)
def _task(task: str, include_path: tuple[str, ...]):
    from lmms_eval.tasks import get_task_dict

    from local_tasks.manager import task_manager

    loaded = get_task_dict([task], task_manager(include_path))[task]
    if isinstance(loaded, dict):
        raise ValueError(f"{task} is a group of tasks")
    return loaded


def task_images(task: str, doc_ids: Iterable[int], include_path: Sequence[str] = ()) -> tuple[dict, str]:
    """``({doc_id: [PIL images]}, "")``, or ``({}, why not)``."""
    try:
        loaded = _task(task, tuple(str(path) for path in include_path))
        documents = loaded.eval_docs
        images = {}
        for doc_id in doc_ids:
            visuals = loaded.doc_to_visual(documents[doc_id]) or []
            visuals = visuals if isinstance(visuals, (list, tuple)) else [visuals]
            images[doc_id] = [v.convert("RGB") for v in visuals if isinstance(v, Image.Image)]
        return images, ""
    except Exception as error:  # noqa: BLE001 -- any loading failure is shown as the reason, never raised
        return {}, f"the task's documents could not be loaded for their images ({type(error).__name__}: {error})"


def write_thumbnail(image: Image.Image, path: Path, side: int = THUMBNAIL_SIDE) -> Path:
    copy = image.copy()
    copy.thumbnail((side, side))
    path.parent.mkdir(parents=True, exist_ok=True)
    copy.save(path)
    return path
