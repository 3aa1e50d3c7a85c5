"""A folder a model argument names for writing (``attention_log``, ``answer_cache``), checked before any weight loads."""

from __future__ import annotations

from pathlib import Path


def writable_folder(folder: str | Path, argument: str) -> Path:
    """``folder``, created; a path that cannot be a writable folder (a file, a path under a file, no permission) is
    refused naming ``argument`` and why, not with a raw ``OSError`` after hours of work."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{argument}={folder}: a file is there; {argument} names a folder (name a new one)")
    for parent in folder.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"{argument}={folder}: {parent} is a file, so no folder can be made under it")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write_probe"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ValueError(f"{argument}={folder}: cannot write there ({error.strerror or error})") from None
    return folder
