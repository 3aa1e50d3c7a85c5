"""Loading a checkpoint of any supported family for training: what is trainable (all, language only, or LoRA
adapters) and how it decays. The checkpoint is resolved as every command resolves one (``models.checkpoint``: its
family, config and processor checked once, an unsupported one refused by name); its family says which class loads it
and where its vision tower is. Training answers nothing, so it needs no engine."""

from __future__ import annotations

import torch

from families import Family, FamilyError
from models.checkpoint import Checkpoint


def resolve_checkpoint(model_id: str, min_pixels: int | None = None, max_pixels: int | None = None) -> Checkpoint:
    """The checkpoint (an unsupported family refused naming the supported ones) with its processor's pixel budget set,
    so every checkpoint evaluates at the trained size."""
    checkpoint = Checkpoint.resolve(model_id, model_name="--model_id")
    try:
        checkpoint.family.configure_pixels(checkpoint.processor, min_pixels, max_pixels)
    except FamilyError as error:
        raise ValueError(f"--min_pixels/--max_pixels: {error}") from None
    return checkpoint


def load_model(checkpoint: Checkpoint, gradient_checkpointing: bool = False) -> torch.nn.Module:
    """fp32 master weights (``--bf16`` autocasts through accelerate), SDPA attention, no KV cache."""
    model = checkpoint.load(torch.float32)
    model.config.use_cache = False
    if gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x renamed it
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def is_vision_parameter(name: str, family: Family) -> bool:
    """Whether a parameter belongs to the family's vision tower (Qwen: ``visual.``, with its patch merger;
    LLaVA: ``vision_tower.``, the projector stays trainable as in LLaVA's own fine-tuning)."""
    return any(prefix in name for prefix in family.vision_prefixes)


def freeze_vision(model: torch.nn.Module, family: Family) -> int:
    """Freeze every vision parameter; returns how many tensors were frozen."""
    frozen = 0
    for name, parameter in model.named_parameters():
        if is_vision_parameter(name, family):
            parameter.requires_grad_(False)
            frozen += 1
    if frozen == 0:
        raise ValueError(
            f"--freeze_vision: the model has no parameters under {' or '.join(family.vision_prefixes)}, where a "
            f"{family.title} checkpoint keeps its vision tower"
        )
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
