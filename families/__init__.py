"""Model families: one small adapter per config ``model_type``, the seam between the methods and a model's code.

| ``model_type`` | family | positions | image tokens | pre-RoPE q / k | pixels (VEA) |
|---|---|---|---|---|---|
| ``qwen3_vl`` | Qwen3-VL | M-RoPE | merged 2 x 2 patches of 16 px: 32 px | ``q_norm`` / ``k_norm`` | patch rows |
| ``qwen3_vl_moe`` | Qwen3-VL MoE (30B-A3B, 235B-A22B) | as Qwen3-VL | as Qwen3-VL | as Qwen3-VL | patch rows |
| ``qwen2_5_vl`` | Qwen2.5-VL | M-RoPE | merged 2 x 2 patches of 14 px: 28 px | ``q_proj`` / ``k_proj`` | patch rows |
| ``llava`` | LLaVA-1.5 (llava-hf) | 1-D RoPE | 14 px patches of a 336 px crop: 24 x 24 | ``q_proj`` / ``k_proj`` | ``[B, 3, H, W]`` |
| ``llava_next`` | LLaVA-NeXT / 1.6 (llava-hf) | 1-D RoPE | a 24 x 24 base tile, then anyres tiles unpadded, rows closed by a newline | ``q_proj`` / ``k_proj`` | tiles ``[B, T, 3, H, W]`` |
| ``gemma3`` | Gemma-3 (4B, 12B, 27B) | 1-D RoPE, two bases | 14 px patches of 896 px pooled 4 x 4: 16 x 16 | ``q_norm`` / ``k_norm`` | ``[B, 3, H, W]`` |

Each family is one record (a :class:`~families.base.Family`) in :data:`FAMILIES`, keyed by its ``model_type``: its
adapter, the test-bed module that builds its random checkpoints, its benchmark shapes and default image sides. A new
family is one file here plus its builder in ``testbed/`` (docs/DEVELOPMENT.md, "Adding a family").

:func:`family_for` reads a checkpoint's ``config.json`` (no weights) and returns its family, or refuses it naming
its ``model_type`` and the supported ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from families.base import Family, FamilyError, read_config
from families.gemma import GEMMA_3
from families.llava import LLAVA_1_5
from families.llava_next import LLAVA_NEXT
from families.qwen import QWEN2_5_VL, QWEN3_VL, QWEN3_VL_MOE

FAMILIES: dict[str, Family] = {
    family.model_type: family for family in (QWEN3_VL, QWEN3_VL_MOE, QWEN2_5_VL, LLAVA_1_5, LLAVA_NEXT, GEMMA_3)
}
# model types that take video only, named so that the refusal says why rather than only "unsupported"
VIDEO_ONLY = {
    "llava_next_video": "LLaVA-NeXT-Video",
    "video_llava": "Video-LLaVA",
    "llava_onevision": "LLaVA-OneVision",
}
# text-only checkpoints of a supported family's line, named so that the refusal says what to use instead
TEXT_ONLY = {
    "gemma3_text": "a text-only Gemma-3 (the 1B model, or a language model saved alone); the methods steer attention "
    "over images: use a Gemma-3 4B, 12B or 27B checkpoint (model_type 'gemma3')",
}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

__all__ = ["FAMILIES", "Family", "FamilyError", "family_for", "family_of_type", "model_type_of"]


def model_type_of(pretrained: str) -> str:
    """The ``model_type`` of a checkpoint folder (its ``config.json``) or hub id (its config, no weights)."""
    folder = Path(str(pretrained)).expanduser()
    if folder.is_dir():
        model_type = read_config(folder).get("model_type")
    elif HUB_ID.match(str(pretrained)):
        from transformers import AutoConfig

        try:
            model_type = AutoConfig.from_pretrained(str(pretrained)).model_type
        except OSError as error:
            raise FamilyError(f"pretrained={pretrained}: its config cannot be read from the hub ({error})") from None
    else:
        raise FamilyError(
            f"pretrained={pretrained!r} is neither a folder nor a hub id (owner/name): no such folder, and not a "
            "hub id's shape"
        )
    if not model_type:
        raise FamilyError(f"pretrained={pretrained}: its config has no model_type")
    return str(model_type)


def family_for(pretrained: str, allowed: Iterable[str] | None = None, model: str = "") -> Family:
    """The family of ``pretrained``; refused before any weight is loaded when it is not supported (or not among
    ``allowed``, the model types the model ``model`` takes)."""
    return family_of_type(model_type_of(pretrained), pretrained, allowed, model)


def family_of_type(model_type: str, pretrained: str, allowed: Iterable[str] | None = None, model: str = "") -> Family:
    """The family of a checkpoint whose config says ``model_type`` (``family_for`` once the config is read)."""
    allowed = list(allowed) if allowed is not None else list(FAMILIES)
    if model_type in VIDEO_ONLY:
        raise FamilyError(
            f"pretrained={pretrained} is a {VIDEO_ONLY[model_type]} checkpoint (model_type {model_type!r}), a video "
            f"model; the methods steer attention over images. Supported model types: {', '.join(allowed)}"
        )
    if model_type in TEXT_ONLY:
        raise FamilyError(f"pretrained={pretrained} has model_type {model_type!r}: {TEXT_ONLY[model_type]}")
    if model_type not in allowed:
        which = f"{model} takes" if model else "supported"
        raise FamilyError(
            f"pretrained={pretrained} has model_type {model_type!r}, which is not supported; {which}: "
            f"{', '.join(allowed)}"
            + (f" (every family: use the vlm_* models for {', '.join(sorted(set(FAMILIES) - set(allowed)))})"
               if model and set(FAMILIES) - set(allowed) and model_type in FAMILIES else "")
        )  # fmt: skip
    return FAMILIES[model_type]
