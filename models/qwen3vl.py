"""The reference study's model names: ``qwen3vl`` and ``qwen3vl_<method>``, which take Qwen3-VL checkpoints only.

The same classes as the ``vlm_*`` models (``models.vlm``, ``models.adaptvis``, ``models.clvs``, ``models.vea``),
restricted to the Qwen3-VL families (dense, and the mixture-of-experts 30B-A3B and 235B-A22B), so that a study's command lines keep meaning exactly what they meant.
"""

from __future__ import annotations

from typing import ClassVar

from models.adaptvis import AdaptVisModel
from models.clvs import CLVSModel
from models.vea import VEAModel
from models.vlm import VLM

QWEN3_FAMILIES = ("qwen3_vl", "qwen3_vl_moe")  # dense and mixture-of-experts


class Qwen3VL(VLM):
    """The baseline on Qwen3-VL."""

    MODEL_NAME: ClassVar[str] = "qwen3vl"
    FAMILIES: ClassVar[tuple[str, ...] | None] = QWEN3_FAMILIES


class Qwen3VLAdaptVis(AdaptVisModel):
    MODEL_NAME: ClassVar[str] = "qwen3vl_adaptvis"
    FAMILIES: ClassVar[tuple[str, ...] | None] = QWEN3_FAMILIES


class Qwen3VLCLVS(CLVSModel):
    MODEL_NAME: ClassVar[str] = "qwen3vl_clvs"
    FAMILIES: ClassVar[tuple[str, ...] | None] = QWEN3_FAMILIES


class Qwen3VLVEA(VEAModel):
    MODEL_NAME: ClassVar[str] = "qwen3vl_vea"
    FAMILIES: ClassVar[tuple[str, ...] | None] = QWEN3_FAMILIES
