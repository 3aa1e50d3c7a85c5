"""Loading a checkpoint into an engine: the one path every command that answers takes.

The lmms-eval adapter (``models.vlm``), the viewer's live re-run and the benchmarks all load through
:func:`load_engine` (or :func:`engine_for`, by ``--model`` name), so a model argument means the same everywhere and is
refused the same way: the checkpoint is resolved once (``models.checkpoint``), the method's arguments are resolved and
checked before any weight is loaded (``models.runner``), then the weights are placed and the engine built.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from families.devices import pick_device, pick_dtype
from models.arguments import is_unset, parse_flag, unquote
from models.checkpoint import Checkpoint
from models.engine import Engine
from models.folders import writable_folder
from models.methods import METHODS, MethodSpec
from models.names import DEFAULT_PRETRAINED, scheme_of
from models.sharding import input_device, parse_placement


@dataclass(frozen=True)
class Process:
    """Where this process stands among data-parallel ones (the adapter's accelerate state; one process elsewhere)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    wait: Callable[[], None] = field(default=lambda: None)  # every process waits here for rank 0 (VEA profiling)


def load_engine(
    name: str,
    families: tuple[str, ...] | None,
    method: MethodSpec | None,
    pretrained: str = DEFAULT_PRETRAINED,
    device: str | None = None,
    dtype: str = "auto",
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    attention_log: str | None = None,
    system_prompt: str | None = None,
    interleave_visuals: bool = False,
    device_map: str | None = None,
    max_memory: str | None = None,
    offload_folder: str | None = None,
    process: Process = Process(),
    **method_arguments: Any,
) -> Engine:
    """The engine of model ``name`` (its ``families`` and ``method``) on ``pretrained``; a method argument that does
    not exist, or a value that cannot work, is refused by name before any weight is loaded."""
    checkpoint = Checkpoint.resolve(pretrained, families, name)
    runner = None
    if method is not None:
        module, runner_class = method.runner.rsplit(".", 1)
        runner = getattr(importlib.import_module(module), runner_class)(name, checkpoint, method_arguments)
    known = {argument.name for argument in method.arguments()} if method is not None else set()
    unknown = sorted(set(method_arguments) - known)
    if unknown:
        raise UnknownArguments(unknown)
    placement = parse_placement(device_map, max_memory, offload_folder, device, process.world_size)
    device = pick_device(device, process.world_size, process.local_rank)
    dtype = pick_dtype(dtype, device)
    log_folder = None if is_unset(attention_log) else writable_folder(attention_log, "attention_log")
    interleave_visuals = parse_flag("interleave_visuals", interleave_visuals)
    checkpoint.configure_pixels(min_pixels, max_pixels)
    problem = checkpoint.grid_problem()
    if log_folder is not None and problem is not None:
        raise ValueError(f"{name}: attention_log stores per-image attention maps, but {problem}")
    checkpoint.processor.tokenizer.padding_side = "left"
    model = checkpoint.load(dtype, **placement.load_kwargs())
    if placement.sharded:  # transformers placed every layer; the inputs go where the first layer is
        device = input_device(model)
    else:
        model.to(device)
    if runner is not None:
        runner.set_up(model, checkpoint, process.rank, process.wait)
    writer = None
    if log_folder is not None:
        from models.attention_log import AttentionLogWriter

        arguments = runner.arguments() if runner is not None else {}
        writer = AttentionLogWriter(log_folder, process.rank, name, checkpoint.depth, arguments)
    engine = Engine(
        checkpoint,
        model,
        device,
        dtype,
        method=runner,
        attention_log=writer,
        system_prompt=unquote(system_prompt).replace("\\n", "\n") if isinstance(system_prompt, str) else None,
        interleave_visuals=interleave_visuals,
        name=name,
    )
    if runner is not None:
        runner.announce_preset()
    return engine


# the model arguments every model takes, in the docs' order (the adapter adds batch_size)
COMMON_ARGUMENTS = tuple(
    name
    for name, parameter in inspect.signature(load_engine).parameters.items()
    if parameter.kind is parameter.POSITIONAL_OR_KEYWORD and name not in ("name", "families", "method", "process")
)


class UnknownArguments(ValueError):
    """Model arguments no model of this name takes (the caller names the valid ones)."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names


def engine_for(name: str, **arguments: Any) -> Engine:
    """The engine of ``--model name`` with ``--model_args`` ``arguments``, without lmms-eval (one process)."""
    scheme, method = scheme_of(name, METHODS)
    try:
        return load_engine(name, scheme.model_types, METHODS[method] if method else None, **arguments)
    except UnknownArguments as error:
        raise ValueError(f"unknown model argument(s) for {name}: {error}") from None
