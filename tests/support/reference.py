"""Independent eager references for the intervention tests (not the code under test).

A plain softmax attention (full ``N x N`` weights, GQA by ``repeat_kv``) registered as
its own transformers attention implementation. In a prefill it hands the last row
(scores, additive mask, weights) to a test-written ``row_fn`` that applies the
METHODS.md formula with per-sequence loops; decode steps are never edited.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from transformers import AttentionInterface, AutoModelForImageTextToText
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

REFERENCE_NAME = "vsr_test_eager_reference"

CONTEXTS = [
    "Look at the image.\nStatement: The cat is on the mat.\nAnswer: True or False.",
    "Statement: The red bus is far away from the small dog on the left of the tall tree.\nTrue or False?",
]
IMAGE_SIZES = [(96, 128), (160, 64)]  # (height, width): different token grids


class EagerReference:
    """The reference attention; set ``row_fn(layer, scores, mask, weights) -> weights`` (all ``[B, H, N]``) to edit
    the last row, or ``weights_fn(layer, scores, mask, weights) -> weights`` (all ``[B, H, N, N]``) to edit any row,
    in every forward over a whole sequence (a prefill, or a step recomputed from scratch)."""

    def __init__(self) -> None:
        self.row_fn: Callable | None = None
        self.weights_fn: Callable | None = None
        self.captured: dict[int, torch.Tensor] = {}  # layer -> prefill last-row weights (as used)
        self.prefill_outputs: dict[int, torch.Tensor] = {}

    def __call__(self, module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        groups = query.shape[1] // key.shape[1]
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
        q_len, k_len = query.shape[2], key.shape[2]
        scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
        if attention_mask is None:
            visible = torch.ones(q_len, k_len, dtype=torch.bool).tril(k_len - q_len)[None, None]
        else:
            visible = attention_mask[..., :k_len].bool()
        additive = torch.zeros(visible.shape).masked_fill(~visible, torch.finfo(torch.float32).min).expand_as(scores)
        weights = torch.softmax(scores + additive, dim=-1)
        prefill = q_len == k_len and q_len > 1
        if prefill and self.weights_fn is not None:
            weights = self.weights_fn(module.layer_idx, scores, additive, weights)
        if prefill and self.row_fn is not None:
            weights = weights.clone()
            weights[:, :, -1] = self.row_fn(module.layer_idx, scores[:, :, -1], additive[:, :, -1], weights[:, :, -1])
        if prefill:
            self.captured[module.layer_idx] = weights[:, :, -1].clone()
        output = torch.matmul(weights, value).transpose(1, 2).contiguous()
        return output, None


def load_reference_model(checkpoint) -> tuple[torch.nn.Module, EagerReference]:
    """The checkpoint through transformers' own auto class (not our families), its text attention the reference."""
    reference = EagerReference()
    AttentionInterface.register(REFERENCE_NAME, reference)
    AttentionMaskInterface.register(REFERENCE_NAME, sdpa_mask)
    model = AutoModelForImageTextToText.from_pretrained(checkpoint, dtype=torch.float32).eval()
    model.set_attn_implementation({"text_config": REFERENCE_NAME})
    return model, reference


M_ROPE_MODEL_TYPES = ("qwen3_vl", "qwen2_5_vl", "qwen3_vl_moe")  # three position rows per token


def sample_images(seed: int = 3) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in IMAGE_SIZES]


def prepare(model, with_images: tuple[bool, bool] = (True, True)):
    """A left-padded batch of the two prompts through ``model``'s engine (an lmms-eval model's, or an engine itself:
    ``Engine.prepare``)."""
    images = sample_images()
    visuals = [[image] if use else [] for image, use in zip(images, with_images)]
    return getattr(model, "engine", model).prepare(list(CONTEXTS), visuals, [0, 1], ["unit", "unit"])


def prepare_one(model):
    """The first prompt alone, with its image: no padding, so a family without bidirectional image attention runs
    the fused kernel with no mask (its own causal flag)."""
    return getattr(model, "engine", model).prepare([CONTEXTS[0]], [[sample_images()[0]]], [0], ["unit"])


def image_positions(batch) -> list[list[int]]:
    return [torch.nonzero(row).flatten().tolist() for row in batch.image_token_mask.cpu()]


@torch.no_grad()
def generation_positions(model, batch) -> dict:
    """The positions ``generate`` gives a left-padded prompt: 1-D models count from each sequence's first real token
    (a plain forward would count from the first pad); M-RoPE models build theirs from the attention mask anyway."""
    if model.config.model_type in M_ROPE_MODEL_TYPES:
        return {}
    mask = batch.inputs["attention_mask"].long()
    return {"position_ids": (mask.cumsum(-1) - 1).clamp(min=0) * mask}


def reference_logits(model, batch, **kwargs) -> torch.Tensor:
    """First-token logits ``[B, V]`` of a plain forward of the reference model (at ``generate``'s positions)."""
    kwargs = {**generation_positions(model, batch), **kwargs}
    return model(**batch.inputs, **kwargs).logits[:, -1].float()


def with_tokens(inputs: dict, tokens: torch.Tensor) -> dict:
    """The prompt's tensors with ``tokens`` ``[B, t]`` appended as text the model generated (visible, not media)."""
    if tokens.shape[1] == 0:
        return dict(inputs)
    extended = dict(inputs)
    extended["input_ids"] = torch.cat([inputs["input_ids"], tokens], dim=1)
    extended["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(tokens)], dim=1)
    for key in ("mm_token_type_ids", "token_type_ids"):
        if key in inputs:
            extended[key] = torch.cat([inputs[key], torch.zeros_like(tokens)], dim=1)
    return extended


@torch.no_grad()
def recomputed_logits(model, reference: EagerReference, inputs: dict, row_fn=None, weights_fn=None) -> torch.Tensor:
    """``[B, V]``: the next token's logits after ``inputs``, the whole sequence computed from scratch (no cache), so
    that the row choosing the token is the last row of a full forward, whichever step it is."""
    positions = {}
    if model.config.model_type not in M_ROPE_MODEL_TYPES:  # generate's positions: from each first real token
        mask = inputs["attention_mask"].long()
        positions = {"position_ids": (mask.cumsum(-1) - 1).clamp(min=0) * mask}
    reference.row_fn, reference.weights_fn = row_fn, weights_fn
    try:
        return model(**inputs, **positions).logits[:, -1].float()
    finally:
        reference.row_fn = reference.weights_fn = None


@torch.no_grad()
def steered_generation(engine, batch, editor, steps: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The tokens ``[B, steps]`` and each step's raw logits of a greedy ``generate`` under ``editor`` (the mechanism
    alone: the steered attention with a full cache, as the engine runs a method that edits decoding steps)."""
    from transformers.cache_utils import DynamicCache

    from interventions import steer
    from interventions.state import SteeringState

    with steer(engine.model, SteeringState(batch.image_token_mask, method=editor)):
        output = engine.model.generate(
            **batch.inputs, max_new_tokens=steps, min_new_tokens=steps, do_sample=False, output_logits=True,
            return_dict_in_generate=True, pad_token_id=engine.tokenizer.pad_token_id, cache=DynamicCache(),
        )  # fmt: skip
    return output.sequences[:, batch.inputs["input_ids"].shape[1] :], [logits.float() for logits in output.logits]


def greedy_reference(next_scores: Callable, engine, size: int, steps: int) -> tuple[torch.Tensor, list, bool]:
    """Greedy decoding by ``next_scores(tokens) -> [B, V]`` (tokens generated so far ``[B, t]``): the tokens, each
    step's scores, and whether all ``steps`` ran. It stops after a step that chose an image or video token: the
    reference recomputes the sequence from scratch, and a media token among the text would ask for an image."""
    media = torch.tensor(engine.family.media_token_ids(engine.model))
    tokens = torch.zeros(size, 0, dtype=torch.long)
    scores = []
    for _ in range(steps):
        step_scores = next_scores(tokens)
        scores.append(step_scores)
        tokens = torch.cat([tokens, step_scores.argmax(-1, keepdim=True)], dim=1)
        if bool(torch.isin(tokens[:, -1], media).any()):
            return tokens, scores, False
    return tokens, scores, True


def assert_same_answers(engine, texts: list[str], tokens: torch.Tensor, complete: bool) -> None:
    """The engine's answers are the reference's tokens as the engine decodes them (up to the end-of-turn token,
    special tokens skipped); a reference cut short by a media token is a prefix of them."""
    eos = engine.tokenizer.eos_token_id
    kept = [row[: (row == eos).nonzero()[0, 0] + 1] if (row == eos).any() else row for row in tokens]
    expected = [engine.processor.decode(row, skip_special_tokens=True) for row in kept]
    if complete:
        assert texts == expected
    else:
        assert all(text.startswith(prefix) for text, prefix in zip(texts, expected)), (texts, expected)


def eager_logits(model, reference: EagerReference, batch, row_fn: Callable | None = None) -> torch.Tensor:
    """First-token logits ``[B, V]`` of the reference model with ``row_fn`` editing the prefill's last row."""
    reference.row_fn = row_fn
    try:
        with torch.no_grad():
            return model(**batch.inputs, **generation_positions(model, batch)).logits[:, -1].float()
    finally:
        reference.row_fn = None


def adaptvis_row_fn(alphas: list[float], layers: set[int], images: list[list[int]]) -> Callable:
    """METHODS.md AdaptVis: image logits of the last row times alpha (before the mask), then softmax."""

    def row_fn(layer, scores, mask, weights):
        if layer not in layers:
            return weights
        out = weights.clone()
        for b, keys in enumerate(images):
            if not keys:
                continue
            logits = scores[b].clone()
            logits[:, keys] = logits[:, keys] * alphas[b]
            out[b] = torch.softmax(logits + mask[b], dim=-1)
        return out

    return row_fn


def independent_unbiased_positions(batch, model_type: str = "qwen3_vl") -> torch.Tensor:
    """Positions counted token by token: text +1, each image run one shared position; ``[3, B, N]`` for M-RoPE
    models (the three rows equal), ``[B, N]`` for 1-D RoPE."""
    input_ids = batch.inputs["input_ids"]
    attention = batch.inputs["attention_mask"].bool()
    image = batch.image_token_mask
    result = torch.zeros(3, *input_ids.shape, dtype=torch.long)
    for b in range(input_ids.shape[0]):
        position, previous_image = 0, False
        for index in range(input_ids.shape[1]):
            if not attention[b, index]:
                continue
            if image[b, index]:
                if not previous_image:
                    run_position = position
                    position += 1
                result[:, b, index] = run_position
            else:
                result[:, b, index] = position
                position += 1
            previous_image = bool(image[b, index])
    return result if model_type in M_ROPE_MODEL_TYPES else result[0]


def clvs_row_fn(
    smoothing: float,
    memory_size: float,
    images: list[list[int]],
    layer0_rows: torch.Tensor | None,
    stop_after: list[int | None],
) -> Callable:
    """METHODS.md CLVS with a given stop schedule: smoothing on in layers 1..stop_after[b] (None: all)."""
    memory: dict[int, torch.Tensor] = {}

    def row_fn(layer, scores, mask, weights):
        out = weights.clone()
        for b, keys in enumerate(images):
            if not keys:
                continue
            if layer == 0:
                row = layer0_rows[b] if layer0_rows is not None else weights[b]
                out[b] = row
                memory[b] = row[:, keys].max(dim=0).values
                continue
            row = weights[b]
            if stop_after[b] is None or layer <= stop_after[b]:
                mixed = row.clone()
                mixed[:, keys] = smoothing * row[:, keys] + (1 - smoothing) * memory[b]
                out[b] = mixed / mixed.sum(dim=-1, keepdim=True)
            memory[b] = memory_size * memory[b] + (1 - memory_size) * row[:, keys].max(dim=0).values
        return out

    return row_fn


@torch.no_grad()
def clvs_reference_logits(
    model, reference: EagerReference, batch, smoothing, memory_size, position_unbiased, stop_after
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """CLVS first-token logits from the eager reference, and each layer's output at the last position."""
    images = image_positions(batch)
    layer0 = None
    if position_unbiased:  # layer 0's inputs do not depend on positions: a forward at unbiased positions
        reference.row_fn = None
        model(**batch.inputs, position_ids=independent_unbiased_positions(batch, model.config.model_type))
        layer0 = reference.captured[0]
    reference.row_fn = clvs_row_fn(smoothing, memory_size, images, layer0, stop_after)
    last_positions: list[torch.Tensor] = []
    handles = [
        layer.register_forward_hook(lambda module, args, out: last_positions.append(out[:, -1].clone()))
        for layer in model.model.language_model.layers
    ]
    try:
        logits = model(**batch.inputs, **generation_positions(model, batch)).logits[:, -1].float()
    finally:
        reference.row_fn = None
        for handle in handles:
            handle.remove()
    return logits, last_positions


LENS_TOP_K = 10  # METHODS.md: the entropy of the top-10 logit-lens logits


def lens_logits(model, hidden_last: torch.Tensor, norm: bool = True) -> torch.Tensor:
    """The logit lens at the last position, ``[B, V]``: ``lm_head`` of the hidden state (after the final norm)."""
    if norm:
        hidden_last = model.model.language_model.norm(hidden_last)
    return model.lm_head(hidden_last)


def lens_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Normalised entropy of the softmax over the top-10 logit-lens logits, ``[B]``."""
    p = torch.softmax(logits.topk(LENS_TOP_K, dim=-1).values, dim=-1)
    return -(p * p.log()).sum(dim=-1) / math.log(LENS_TOP_K)


def fold_by_loops(values, image) -> torch.Tensor:
    """One image's per-token ``values [..., tokens]`` on its map grid, token by token and cell by cell: each token of
    a part adds its value times the fraction of its cell's area that lies in each map cell (both grids span the same
    unit square); tokens past a part's columns (newlines) add nothing. Independent of ``interventions.grids``."""
    values = torch.as_tensor(values).detach().double()
    rows, columns = image.grid
    out = torch.zeros(*values.shape[:-1], rows, columns, dtype=torch.float64)

    def overlap(a0: float, a1: float, b0: float, b1: float) -> float:
        return max(0.0, min(a1, b1) - max(a0, b0))

    index = 0
    for part in image.parts:
        for r in range(part.rows):
            for c in range(part.columns + part.trailing):
                value = values[..., index]
                index += 1
                if c >= part.columns:
                    continue
                for i in range(rows):
                    down = overlap(r / part.rows, (r + 1) / part.rows, i / rows, (i + 1) / rows) * part.rows
                    if down == 0:
                        continue
                    for j in range(columns):
                        across = overlap(c / part.columns, (c + 1) / part.columns, j / columns, (j + 1) / columns)
                        if across:
                            out[..., i, j] += value * down * across * part.columns
    assert index == values.shape[-1], f"{values.shape[-1]} tokens given, the layout has {index}"
    return out


def llava_next_region(width: int, height: int, tile: int, patch: int, pinpoints) -> list[float]:
    """The part of a ``width x height`` image that LLaVA-NeXT's kept high-resolution tokens cover, written out from
    the processor's and the model's rules: the best-fitting canvas, the image resized into it (aspect kept, ceil) and
    centred, the token rows (or columns) that are only padding dropped (rounded to 7 places, halved, floor)."""
    best, best_key = None, None
    for canvas_h, canvas_w in pinpoints:
        scale = min(canvas_w / width, canvas_h / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        key = (effective, -(canvas_w * canvas_h - effective))
        if best_key is None or key > best_key:
            best, best_key = (canvas_h, canvas_w), key
    canvas_h, canvas_w = best
    if canvas_w / width < canvas_h / height:
        new_w, new_h = canvas_w, min(math.ceil(height * canvas_w / width), canvas_h)
    else:
        new_w, new_h = min(math.ceil(width * canvas_h / height), canvas_w), canvas_h
    left, top = (canvas_w - new_w) // 2, (canvas_h - new_h) // 2
    rows, columns = canvas_h // patch, canvas_w // patch
    box = [0, 0, columns, rows]  # token columns / rows kept: x0, y0, x1, y1
    if width / height > columns / rows:
        pad = (rows - int(round(height * columns / width, 7))) // 2
        box[1], box[3] = pad, rows - pad
    else:
        pad = (columns - int(round(width * rows / height, 7))) // 2
        box[0], box[2] = pad, columns - pad
    x0, y0, x1, y1 = (v * patch for v in box)
    region = [(x0 - left) * width / new_w, (y0 - top) * height / new_h, (x1 - left) * width / new_w,
              (y1 - top) * height / new_h]  # fmt: skip
    return [max(0.0, region[0]), max(0.0, region[1]), min(float(width), region[2]), min(float(height), region[3])]


def pai_weights_fn(alpha: float, layers: range, images: list[list[int]], first_row: int):
    """PAI's edit (LALBJ/PAI ``attention.py:72-97``) of every row from position ``first_row`` on: after the mask, the
    visible image columns ``x + alpha * |x|``, then softmax (rows before it are left as computed). A masked key stays
    masked (Gemma-3's sliding window hides image keys from late rows; docs/METHODS.md says why the authors' clamp is
    not followed)."""

    def weights_fn(layer, scores, mask, weights):
        if layer not in layers:
            return weights
        out = weights.clone()
        for b, keys in enumerate(images):
            if not keys:
                continue
            for row in range(first_row, scores.shape[2]):
                logits = scores[b, :, row] + mask[b, :, row]
                visible = [key for key in keys if mask[b, 0, row, key] == 0]
                logits[:, visible] = logits[:, visible] + alpha * logits[:, visible].abs()
                out[b, :, row] = torch.softmax(logits, dim=-1)
        return out

    return weights_fn


def vaf_weights_fn(enh: float, sup: float, layers: range, images: list[list[int]]):
    """Rows after the last image key: image columns times ``enh``, columns before the first image key times ``sup``,
    then the mask and the softmax (ustc-hyin/ClearSight ``AttnAdapter.py:70-79, 87-95``)."""

    def weights_fn(layer, scores, mask, weights):
        if layer not in layers:
            return weights
        out = weights.clone()
        for b, keys in enumerate(images):
            if not keys:
                continue
            for row in range(max(keys) + 1, scores.shape[2]):
                logits = scores[b, :, row].clone()
                logits[:, keys] = logits[:, keys] * enh
                logits[:, : min(keys)] = logits[:, : min(keys)] * sup
                out[b, :, row] = torch.softmax(logits + mask[b, :, row], dim=-1)
        return out

    return weights_fn
