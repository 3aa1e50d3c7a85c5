"""Checks of a study's inputs, shared by the seed study (``reproduce.py``) and the papers' studies
(``paper_studies.py``): each problem is one line naming what to fix, found before anything runs."""

from __future__ import annotations

import os
from pathlib import Path


def env_path(variable: str) -> Path | None:
    value = os.environ.get(variable, "").strip()
    return Path(value).expanduser() if value else None


def check_benchmarks(tasks: list[str], include_path: str | None, refuse_vsr: bool = True) -> list[str]:
    """Every --benchmarks name must be a task or group lmms-eval knows (here, with --include_path)."""
    if not tasks:
        return []
    from analysis.metrics import task_manager

    known = set(task_manager((include_path,) if include_path else ()).all_tasks)
    vsr = [t for t in tasks if t.startswith("vsr")] if refuse_vsr else []
    unknown = [t for t in tasks if t not in known]
    problems = [f"--benchmarks {t}: VSR is evaluated anyway; name other tasks" for t in vsr]
    problems += [
        f"--benchmarks {t}: not an lmms-eval task or group here (python -m lmms_eval --tasks list shows them"
        f"{'; is --include_path right?' if include_path else ', or pass --include_path FOLDER for your own'})"
        for t in unknown
        if t not in vsr
    ]
    return problems


def check_hub(checkpoint: str, flag: str) -> list[str]:
    """A local folder must be a checkpoint; a hub id must be cached or the hub reachable."""
    path = Path(checkpoint).expanduser()
    if path.exists() or checkpoint.startswith((".", "/", "~")):
        if not (path / "config.json").is_file():
            return [f"{flag} {checkpoint}: no config.json there; pass a Qwen3-VL checkpoint folder"]
        return []
    from huggingface_hub import model_info, try_to_load_from_cache

    cached = try_to_load_from_cache(checkpoint, "config.json")
    if isinstance(cached, str):
        return []
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return [f"{checkpoint}: not in the local cache and HF_HUB_OFFLINE is set: unset it, or download it and "
                f"pass {flag} /path/to/folder"]  # fmt: skip
    try:
        model_info(checkpoint, timeout=15)
    except Exception as error:  # connection errors come in many types
        return [f"{checkpoint}: the hub cannot be reached ({type(error).__name__}): check the network, or download "
                f"it elsewhere (huggingface-cli download {checkpoint}) and pass {flag} /path/to/folder"]  # fmt: skip
    return []
