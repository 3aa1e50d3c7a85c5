"""What the engine passes around: a task's generation settings, a prepared batch, and the answers to it.

The engine (``models.engine``) turns request contexts and visuals into a :class:`PreparedBatch` once, and every
answering path (a method's shared prefix, its whole-prompt fallback, a sweep's grid) returns :class:`Response`
objects over the same batch, so the attention log and the sweep read one shape whatever produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from interventions.grids import ImageTokens
from local_tasks.images import ImageFileError, open_rgb
from models.arguments import DEFAULT_MAX_NEW_TOKENS


@dataclass
class GenerationSettings:
    """What a task's ``generation_kwargs`` ask for, normalised."""

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = 0.0
    top_p: float | None = None
    num_beams: int = 1
    until: list[str] = field(default_factory=list)

    @property
    def do_sample(self) -> bool:
        return self.temperature > 0

    @classmethod
    def from_task(cls, gen_kwargs: dict, default_stop: str) -> GenerationSettings:
        gen_kwargs = dict(gen_kwargs or {})
        until = gen_kwargs.pop("until", [default_stop])
        if isinstance(until, str):
            until = [until]
        if not isinstance(until, list):
            raise ValueError(f"generation_kwargs['until'] must be a string or a list, got {type(until).__name__}")
        return cls(
            max_new_tokens=int(gen_kwargs.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)),
            temperature=float(gen_kwargs.get("temperature", 0.0) or 0.0),
            top_p=gen_kwargs.get("top_p"),
            num_beams=int(gen_kwargs.get("num_beams", 1) or 1),
            until=[stop for stop in until if stop],
        )


@dataclass
class PreparedBatch:
    """One batch as the model sees it, plus what interventions and logs need to know about it."""

    contexts: list[str]  # as the task wrote them (placeholders included)
    images: list[list[Image.Image]]  # per sequence, in prompt order (the order of the image grids and maps)
    doc_ids: list[int]
    task_names: list[str]
    inputs: Any  # BatchFeature on the model's device, left-padded
    image_token_mask: torch.Tensor  # [B, N] bool, True at image-token positions
    image_tokens: list[list[ImageTokens]]  # per sequence, per image: how its tokens fold into its map grid
    visuals: list[list[Image.Image]] = field(default_factory=list)  # per sequence, in the task's order
    image_regions: list[list[tuple[float, float, float, float]]] = field(default_factory=list)  # the grid's cover

    @property
    def size(self) -> int:
        return len(self.contexts)

    @property
    def image_grids(self) -> list[list[tuple[int, int]]]:
        """Per sequence, per image: the (rows, columns) of the grid its maps are drawn in."""
        return [[image.grid for image in sequence] for sequence in self.image_tokens]


@dataclass
class Response:
    """Answers of one batch and what the generation saw of its first token."""

    texts: list[str]
    first_token_probs: torch.Tensor  # [B, V] softmax of the first generated token's logits
    first_token_logits: torch.Tensor | None = None  # [B, V] float32, the raw logits themselves
    generated_tokens: list[int] = field(default_factory=list)  # per sequence, tokens generated (stop included)
    extras: list[dict] = field(default_factory=list)  # per sequence, for the attention log

    def rows(self, start: int, stop: int) -> Response:
        """The sequences ``start:stop`` (one setting of a batch answered for several settings at once)."""
        return Response(
            texts=self.texts[start:stop],
            first_token_probs=self.first_token_probs[start:stop],
            first_token_logits=None if self.first_token_logits is None else self.first_token_logits[start:stop],
            generated_tokens=self.generated_tokens[start:stop],
            extras=[dict(extra) for extra in self.extras[start:stop]],
        )


def generated_lengths(generated: torch.Tensor, pad_token_id: int | None) -> list[int]:
    """Tokens each sequence generated: ``generate`` pads a finished sequence's remaining steps."""
    if pad_token_id is None:
        return [generated.shape[1]] * generated.shape[0]
    real = (generated != pad_token_id).long()
    positions = torch.arange(1, generated.shape[1] + 1, device=generated.device)
    return (real * positions).max(dim=1).values.tolist()


def truncate_at_stops(text: str, stops: list[str]) -> str:
    """Cut an answer at the first of the task's stop strings (the final guard; generation already stops there)."""
    for stop in stops:
        text = text.split(stop)[0]
    return text


def load_images(visual: Any, task_name: str) -> list[Image.Image]:
    """A task's visuals as RGB images: PIL images or image file paths; videos are refused by name."""
    if visual is None:
        return []
    items = visual if isinstance(visual, (list, tuple)) else [visual]
    images = []
    for item in items:
        if isinstance(item, Image.Image):
            images.append(item.convert("RGB"))
        elif isinstance(item, (str, Path)) and Path(item).suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp", ".webp"}:
            try:
                images.append(open_rgb(item))
            except ImageFileError as error:
                raise ImageFileError(f"task {task_name}: {error}") from None
        else:
            raise NotImplementedError(
                f"task {task_name}: visual of type {type(item).__name__} ({str(item)[:80]!r}) is not supported; "
                "the models take images (PIL or file paths), not video or audio"
            )
    return images
