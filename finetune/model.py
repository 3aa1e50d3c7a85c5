"""Loading Qwen3-VL for training: what is trainable (all, language only, or LoRA adapters) and how it decays."""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

VISION_PREFIX = "visual."  # Qwen3-VL's vision tower, patch merger and deepstack mergers live under model.visual


def load_processor(model_id: str, min_pixels: int | None = None, max_pixels: int | None = None) -> Any:
    """The checkpoint's processor with the pixel budget set, so every checkpoint evaluates at the trained size."""
    processor = AutoProcessor.from_pretrained(model_id)
    size = dict(processor.image_processor.size)
    if min_pixels is not None:
        size["shortest_edge"] = int(min_pixels)
    if max_pixels is not None:
        size["longest_edge"] = int(max_pixels)
    processor.image_processor.size = size
    return processor


def load_model(model_id: str, gradient_checkpointing: bool = False) -> Qwen3VLForConditionalGeneration:
    """fp32 master weights (``--bf16`` autocasts through accelerate), SDPA attention, no KV cache."""
    model = Qwen3VLForConditionalGeneration.from_pretrained(model_id, dtype=torch.float32, attn_implementation="sdpa")
    model.config.use_cache = False
    if gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x renamed it
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def is_vision_parameter(name: str) -> bool:
    return VISION_PREFIX in name


def freeze_vision(model: torch.nn.Module) -> int:
    """Freeze every vision parameter; returns how many tensors were frozen (0 means the layout is unknown)."""
    frozen = 0
    for name, parameter in model.named_parameters():
        if is_vision_parameter(name):
            parameter.requires_grad_(False)
            frozen += 1
    if frozen == 0:
        raise ValueError("--freeze_vision: the model has no parameters under 'visual.'; is it a Qwen3-VL?")
    return frozen


def add_lora(
    model: torch.nn.Module, r: int, alpha: int, dropout: float, targets: list[str], gradient_checkpointing: bool = False
) -> torch.nn.Module:
    """Wrap with PEFT LoRA adapters on ``targets``; every other weight is frozen."""
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    unknown = [target for target in targets if target not in present]
    if unknown:
        raise ValueError(f"--lora_target_modules: no module named {', '.join(unknown)} in the model")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none")
    model = get_peft_model(model, config)
    if gradient_checkpointing:  # checkpointed blocks need an input that requires grad when the base is frozen
        model.enable_input_require_grads()
    return model


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weight matrices, none on biases and norm scales (as transformers' Trainer)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim < 2 or "norm" in name else decay).append(parameter)
    if not decay and not no_decay:
        raise ValueError("nothing to train: every parameter is frozen")
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total
