"""What every model family answers for the methods and the mechanism; :class:`Family` holds the shared answers.

The methods (``interventions/``) are math on the prompt's last attention row or on the image, and know no family.
Everything that differs between model families is a question asked here: where the decoder layers are, which keys
are image keys and how each image's tokens form a grid, how the prompt's positions are built (M-RoPE or 1-D) and
restored between passes on a shared prefix, which modules give the pre-RoPE queries and keys, how the processor
lays out pixels (VEA), how a checkpoint is loaded and what is its vision tower. A family is a small object with no
state of its own; one instance per ``model_type`` (``families.FAMILIES``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from interventions.grids import ImageTokens
from interventions.prefix import PreRope


class FamilyError(ValueError):
    """A checkpoint this project cannot run as asked; the message names the cause and what is supported."""


Region = tuple[float, float, float, float]  # (x0, y0, x1, y1) in the original image's pixels


@dataclass(frozen=True)
class Family:
    """One model family's record: its answers (subclasses fill in what differs) and where the rest of the project finds
    what it needs of the family, so that a new family is this record plus its test-bed builder.

    ``pre_rope``: the two modules, on a decoder layer's attention module, whose outputs are the queries and keys
    before the rotary embedding, and their layout (``interventions.prefix.PreRope``). ``vision_prefixes``:
    name parts of the vision tower's parameters (``python -m finetune --freeze_vision``).
    """

    model_type: str
    title: str
    model_class: str
    pre_rope: PreRope
    vision_prefixes: tuple[str, ...]
    rope: str  # "M-RoPE" or "1-D RoPE": how the prompt's positions are built
    testbed: str
    """The module that builds the family's random checkpoints (``"testbed.tiny_qwen3"``), named, not imported:
    ``families/`` imports no test bed. It defines ``build(kind, num_layers, seed)``, the tiny checkpoint
    (``testbed.tiny.BUILDERS``), and, for a family with a wide :attr:`benchmark_shapes`,
    ``build_wide(shape, text_layers, vision_layers)`` (``benchmarks.shapes.build_checkpoint``)."""
    benchmark_sides: tuple[int, ...]
    """Square image sides in pixels that ``python -m benchmarks.interventions`` measures by default, one measurement
    each: about 256 and 1,024 image tokens where the image's size sets the count."""
    benchmark_shapes: tuple[str, ...] = ("tiny",)
    """The random checkpoints the cost benchmarks build (``--shape``): ``tiny`` (the test checkpoint) and wide shapes
    with a released model's widths and few layers (``benchmarks.shapes``)."""
    # text that, closing the user's turn, already asks for the answer: a template ending a turn with it needs no
    # generation prompt (Mistral's "[INST] ... [/INST]", which LLaVA-NeXT's Mistral checkpoints use)
    turn_closers: tuple[str, ...] = ()
    # how the processor sizes every image itself, for a family whose processor takes no min_pixels / max_pixels
    # (empty: it takes them, as Qwen's do); such a family refuses them, naming this
    fixed_size: str = ""

    # ---------------------------------------------------------------- loading
    def load(self, pretrained: str, dtype: torch.dtype, **placement: Any) -> torch.nn.Module:
        """The checkpoint with SDPA attention (the steered attention wraps SDPA); ``placement``: ``device_map``,
        ``max_memory``, ``offload_folder`` for a model sharded across devices (``models.sharding``)."""
        import transformers

        model_class = getattr(transformers, self.model_class)
        return model_class.from_pretrained(pretrained, dtype=dtype, attn_implementation="sdpa", **placement)

    def check(self, config: Any, processor: Any, pretrained: str | None = None) -> None:
        """Refuse, before any work, a checkpoint of this family that the methods cannot run (``pretrained``: where
        its files are, for what a loaded processor no longer shows)."""
        if getattr(processor, "image_processor", None) is None:
            raise FamilyError(f"{self.title} checkpoint without an image processor: the methods need images")
        template = getattr(processor, "chat_template", None)
        if not template:
            raise FamilyError(f"the {self.title} checkpoint's processor has no chat template")
        probe = [{"role": "user", "content": [{"type": "text", "text": "probe"}]}]
        with_prompt = processor.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
        without = processor.apply_chat_template(probe, tokenize=False, add_generation_prompt=False)
        if with_prompt == without and not without.rstrip().endswith(self.turn_closers):
            raise FamilyError(
                f"the {self.title} checkpoint's chat template has no generation prompt (add_generation_prompt changes "
                "nothing), so the model would not be asked to answer; give the checkpoint a chat template that opens "
                "the assistant's turn"
            )

    @property
    def takes_pixel_budget(self) -> bool:
        return not self.fixed_size

    def configure_pixels(self, processor: Any, min_pixels: int | None, max_pixels: int | None) -> tuple[int, int]:
        """Apply ``min_pixels`` / ``max_pixels``; returns the pixel budget in use.

        A family with a :attr:`fixed_size` refuses them: silently ignoring them would run a different experiment
        from the one asked for."""
        if self.fixed_size:
            if min_pixels is not None or max_pixels is not None:
                raise FamilyError(
                    f"min_pixels / max_pixels set a Qwen processor's pixel budget; {self.fixed_size}, so they do not "
                    "apply"
                )
            return self.fixed_pixel_budget(processor)
        image_processor = processor.image_processor
        size = dict(image_processor.size)
        if min_pixels is not None:
            size["shortest_edge"] = int(min_pixels)
        if max_pixels is not None:
            size["longest_edge"] = int(max_pixels)
        image_processor.size = size
        return size["shortest_edge"], size["longest_edge"]

    def fixed_pixel_budget(self, processor: Any) -> tuple[int, int]:
        """The fewest and most pixels an image gets, for a family with a :attr:`fixed_size`."""
        raise NotImplementedError

    # ---------------------------------------------------------------- structure
    def text_config(self, model: torch.nn.Module) -> Any:
        return self.text_config_of(model.config)

    def text_config_of(self, config: Any) -> Any:
        """The language model's part of a checkpoint's config (its depth, heads, vocabulary)."""
        return getattr(config, "text_config", None) or config

    def decoder(self, model: torch.nn.Module) -> torch.nn.Module:
        """The language model: ``layers``, ``norm`` and ``rotary_emb``."""
        inner = getattr(model, "model", model)
        return getattr(inner, "language_model", inner)

    def media_token_ids(self, model: torch.nn.Module) -> tuple[int, ...]:
        """Token ids that stand for pixels (images, videos): the prompt's last position must not be one."""
        config = model.config
        ids = [getattr(config, name, None) for name in ("image_token_id", "video_token_id")]
        return tuple(int(i) for i in ids if i is not None)

    def image_token_id(self, model: torch.nn.Module) -> int:
        return int(model.config.image_token_id)

    def grid_problem(self, config: Any) -> str | None:
        """Why this checkpoint's image tokens do not form one grid per image (None when they do): VEA and the
        attention log's maps need that grid, AdaptVis and CLVS only the image tokens."""
        return None

    # ---------------------------------------------------------------- inputs
    def encoder_inputs(self, inputs: Any) -> dict[str, torch.Tensor]:
        """What ``get_image_features`` takes, from the processor's output."""
        return {"pixel_values": inputs["pixel_values"]}

    def image_grids(self, processor: Any, inputs: Any, counts: Sequence[int]) -> list[list[tuple[int, int]]]:
        """Per sequence, per image in prompt order: the ``(rows, columns)`` of its image tokens."""
        raise NotImplementedError

    def image_tokens(self, processor: Any, inputs: Any, counts: Sequence[int]) -> list[list[ImageTokens]]:
        """Per sequence, per image: how its tokens fold into the grid of :meth:`image_grids` (one row-major grid,
        unless the family lays an image out in several)."""
        return [[ImageTokens.single(*grid) for grid in grids] for grids in self.image_grids(processor, inputs, counts)]

    def image_regions(self, processor: Any, sizes: Sequence[tuple[int, int]]) -> list[Region]:
        """Per image of original ``(width, height)``: the part of it the token grid covers (the whole image unless
        the processor crops)."""
        return [(0.0, 0.0, float(width), float(height)) for width, height in sizes]

    def pixel_layout(self, processor: Any) -> Any:
        """How ``pixel_values`` hold the images (``families.pixels.PatchLayout`` or ``PlanarLayout``)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- positions
    def prompt_positions(self, model: torch.nn.Module, inputs: Any) -> tuple[torch.Tensor, Any]:
        """The position ids ``generate`` gives the whole prompt, and the model state to restore between passes."""
        return text_positions(inputs), None

    def forward_positions(self, inputs: Any) -> dict[str, torch.Tensor]:
        """Keyword arguments that give a plain whole-prompt forward the positions ``generate`` gives the prompt.

        Why: without them a forward numbers a left-padded sequence's tokens from the first pad, while ``generate``
        (and the shared prefix) numbers them from the first real token; rotary attention is relative, but in float32
        the two differ by rounding that grows with the padding (6e-5 in a logit with ~400 pads).
        """
        return {"position_ids": text_positions(inputs)}

    def rope_positions(self, positions: torch.Tensor) -> torch.Tensor:
        """The part of :meth:`prompt_positions`' ids that the rotary embedding takes."""
        return positions

    def restore(self, model: torch.nn.Module, state: Any) -> None:
        """Put back what a pass on a shared prefix may change (nothing for 1-D RoPE)."""

    def tile_state(self, state: Any, copies: int) -> Any:
        return state

    def layer0_rotary(self, model: torch.nn.Module, probe: torch.Tensor, positions: torch.Tensor) -> tuple:
        """Layer 0's rotary ``(cos, sin)`` at ``positions`` (CLVS re-rotates layer 0's queries and keys)."""
        return self.decoder(model).rotary_emb(probe, positions)

    def ties_positions_to_images(self) -> bool:
        """Whether an image's tokens take 2-D grid positions (M-RoPE) rather than one position each."""
        return False


@dataclass(frozen=True)
class FixedSizeFamily(Family):
    """A family whose processor brings every image to one input size (LLaVA-1.5's crop, Gemma-3's square): every
    image gets that many pixels, the fewest and the most alike. (LLaVA-NeXT, a LLaVA, gives its own budget: from
    one tile to its largest canvas.)"""

    def fixed_pixel_budget(self, processor: Any) -> tuple[int, int]:
        height, width = self._input_size(processor.image_processor)
        return height * width, height * width

    @staticmethod
    def _input_size(image_processor: Any) -> tuple[int, int]:
        """``(height, width)`` of every image the processor gives the vision tower."""
        raise NotImplementedError


def per_sequence(flat: Sequence[Any], counts: Sequence[int]) -> list[list[Any]]:
    """A batch's per-image values (images in prompt order, sequence after sequence) split into one list per sequence
    of ``counts[b]`` images."""
    split, start = [], 0
    for count in counts:
        split.append(list(flat[start : start + count]))
        start += count
    return split


def text_positions(inputs: Any) -> torch.Tensor:
    """``[B, N]`` 1-D positions of a left-padded batch, as ``generate`` builds them from the attention mask."""
    input_ids = inputs["input_ids"]
    attention_mask = inputs.get("attention_mask")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    return (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise FamilyError(f"pretrained={folder}: no config.json in that folder; pass a checkpoint folder or a hub id")
    return json.loads(path.read_text(encoding="utf-8"))
