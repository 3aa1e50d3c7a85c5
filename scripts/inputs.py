"""Every check of a study's inputs (``scripts/study.py``): each problem is one line naming what to fix, found before
anything runs, so a run that would fail after an hour of GPU time does not start."""

from __future__ import annotations

import os
import re
from pathlib import Path

COCO_FILES = ("instances_train2017.json", "instances_val2017.json")
# lmms-eval tasks whose scorer reads NLTK's data (lmms_eval/tasks/coco_cap_chair/utils.py: word_tokenize, pos_tag,
# WordNet's lemmatizer), only when it scores, after every answer is generated
NLTK_SCORED_TASKS = ("coco_cap_chair",)


def env_path(variable: str) -> Path | None:
    value = os.environ.get(variable, "").strip()
    return Path(value).expanduser() if value else None


def check_data_variables(data: dict[str, str]) -> list[str]:
    """Each environment variable a study names must point at a folder (``data``: variable -> what it holds)."""
    problems = []
    for variable, what in data.items():
        value = os.environ.get(variable, "").strip()
        if not value or not Path(value).expanduser().is_dir():
            state = "is not set" if not value else f"={value} does not exist"
            problems.append(f"{variable} {state}: export {variable}=/path/to/it ({what})")
    return problems


def check_vsr_data(folder: Path | None, dataset_types: list[str], splits: list[str], limit: int | None) -> list[str]:
    """VSR's images for every evaluated row (train rows are read by fine-tuning and profiling, which name a missing
    image themselves), and the split files when ``folder`` has its own ``splits/`` (else the packaged ones are read)."""
    from vsr_tasks import data as vsr

    if folder is not None and not folder.is_dir():
        return [f"{vsr.DATA_DIR_VARIABLE}={folder} does not exist (or pass --vsr_data_dir)"]
    try:
        images = vsr.image_dir(folder)
    except vsr.VSRDataError as error:
        return [
            f"{error} Clone cambridgeltl/visual-spatial-reasoning and download the images with its data/ script "
            "(the split files ship with the plugin)."
        ]
    annotations = vsr.annotations_dir(folder)
    problems = []
    for dataset_type in dataset_types:
        for split in splits:
            path = vsr.split_path(annotations, dataset_type, split)
            if not path.is_file():
                problems.append(
                    f"{path} is missing: a VSR data folder with splits/ must hold {dataset_type}/{split}.jsonl"
                )
                continue
            if split == "train":
                continue
            rows = vsr.read_rows(path)[:limit] if limit else vsr.read_rows(path)
            missing = []
            for row in rows:
                try:
                    vsr.image_path(row, images)
                except vsr.VSRDataError:
                    missing.append(row["image"])
            if missing:
                problems.append(
                    f"{len(missing)} of the {len(rows)} {dataset_type}/{split} images are missing from {images} "
                    f"(first: {missing[0]}): download them with VSR's data/ script or set {vsr.IMAGE_DIR_VARIABLE}"
                )
    return problems


def check_coco(folder: Path | None) -> list[str]:
    """COCO's 2017 annotations, for VEA's layer profiling."""
    from profiling import COCO_ANNOTATIONS_VARIABLE

    missing = [name for name in COCO_FILES if not folder or not (folder / name).is_file()]
    if not missing:
        return []
    return [
        f"{COCO_ANNOTATIONS_VARIABLE} {'is not set' if folder is None else f'={folder} lacks ' + ', '.join(missing)}: "
        f"download COCO 2017 annotations (cocodataset.org) and export {COCO_ANNOTATIONS_VARIABLE}=/path/to/annotations, "
        "or pass --vea_layers study to use the study's layers"
    ]


def check_benchmarks(
    tasks: list[str], include_path: str | None, refuse_vsr: bool = True, flag: str = "--benchmarks"
) -> list[str]:
    """Every task name must be a task or group lmms-eval knows (here, with --include_path)."""
    if not tasks:
        return []
    from local_tasks.manager import task_manager

    known = set(task_manager(include_path).all_tasks)
    vsr = [t for t in tasks if t.startswith("vsr")] if refuse_vsr else []
    unknown = [t for t in tasks if t not in known]
    problems = [f"{flag} {t}: VSR is evaluated anyway; name other tasks" for t in vsr]
    problems += [
        f"{flag} {t}: not an lmms-eval task or group here (python -m lmms_eval --tasks list shows them"
        f"{'; is --include_path right?' if include_path else ', or pass --include_path FOLDER for your own'})"
        for t in unknown
        if t not in vsr
    ]
    return problems


def check_nltk_data(tasks: list[str]) -> list[str]:
    """The NLTK data a task's scorer needs (CHAIR's), found by calling what the scorer calls: without it the run
    would generate every caption and then fail."""
    scored = sorted({task for task in tasks if task.startswith(NLTK_SCORED_TASKS)})
    if not scored:
        return []
    import nltk
    from nltk.stem import WordNetLemmatizer

    probes = (
        lambda: nltk.word_tokenize("a cat sat"),
        lambda: nltk.pos_tag(["a", "cat"]),
        lambda: WordNetLemmatizer().lemmatize("cats"),
    )
    missing = []
    for probe in probes:
        try:
            probe()
        except LookupError as error:
            found = re.search(r"Resource '?([\w.]+)'? not found", str(error))
            missing.append(found.group(1) if found else str(error).strip().splitlines()[0])
    if not missing:
        return []
    return [
        f"{', '.join(scored)}: lmms-eval scores it with NLTK, whose data is missing here ({', '.join(missing)}): "
        f"python -m nltk.downloader {' '.join(missing)} (or export NLTK_DATA=/path/to/nltk_data)"
    ]


def check_hub(checkpoint: str, flag: str, assign: str = " ") -> list[str]:
    """A local folder must be a checkpoint; a hub id must be cached or the hub reachable. ``flag`` and ``assign``
    spell how a user passes a folder instead (``--random_checkpoint /path``, ``--checkpoint NAME=/path``)."""
    folder = f"{flag}{assign}/path/to/folder"
    path = Path(checkpoint).expanduser()
    if path.exists() or checkpoint.startswith((".", "/", "~")):
        if not (path / "config.json").is_file():
            return [f"{flag}{assign}{checkpoint}: no config.json there; pass a checkpoint folder"]
        return []
    from huggingface_hub import model_info, try_to_load_from_cache

    cached = try_to_load_from_cache(checkpoint, "config.json")
    if isinstance(cached, str):
        return []
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return [f"{checkpoint}: not in the local cache and HF_HUB_OFFLINE is set: unset it, or download it and "
                f"pass {folder}"]  # fmt: skip
    try:
        model_info(checkpoint, timeout=15)
    except Exception as error:  # connection errors come in many types
        return [f"{checkpoint}: the hub cannot be reached ({type(error).__name__}): check the network, or download "
                f"it elsewhere (huggingface-cli download {checkpoint}) and pass {folder}"]  # fmt: skip
    return []
