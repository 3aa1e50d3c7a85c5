"""Loading a checkpoint into an engine: the one path every command that answers takes.

Every command that answers (the lmms-eval models, the sweep, the viewer's live re-run, VEA's layer profiling, the
benchmarks) loads through :func:`load_engine`, through ``plugin.engine_for`` by ``--model`` name, so a model argument
means the same everywhere and is refused the same way: the checkpoint is resolved once (``models.checkpoint``), the
method's arguments are resolved and checked before any weight is loaded (``models.runner``), then the weights are
placed, the engine built and the method set up on it.
"""

from __future__ import annotations

import inspect
from typing import Any

from families.devices import pick_device, pick_dtype
from models.arguments import is_unset, parse_flag, unquote
from models.checkpoint import Checkpoint
from models.engine import ROWS_PER_PASS, Engine
from models.folders import writable_folder
from models.host import ONE_PROCESS, LayerProfiler, Process
from models.methods import MethodSpec
from models.names import DEFAULT_PRETRAINED
from models.sharding import input_device, parse_placement

__all__ = ["COMMON_ARGUMENTS", "Process", "UnknownArguments", "load_engine"]


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
    *,
    process: Process = ONE_PROCESS,
    rows_per_pass: int = ROWS_PER_PASS,
    layer_profiler: LayerProfiler | None = None,
    **method_arguments: Any,
) -> Engine:
    """The engine of model ``name`` (its ``families`` and ``method``) on ``pretrained``; a method argument that does
    not exist, or a value that cannot work, is refused by name before any weight is loaded.

    Keyword-only, not model arguments: ``process`` (data-parallel rank), ``rows_per_pass`` (a sweep's batched
    settings), ``layer_profiler`` (VEA's first-use profiling, supplied from above the models: ``plugin``).
    """
    checkpoint = Checkpoint.resolve(pretrained, families, name)
    runner = method.runner(method, name, checkpoint, method_arguments) if method is not None else None
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
    engine = Engine(
        checkpoint,
        model,
        device,
        dtype,
        method=runner,
        system_prompt=unquote(system_prompt).replace("\\n", "\n") if isinstance(system_prompt, str) else None,
        interleave_visuals=interleave_visuals,
        name=name,
        rows_per_pass=rows_per_pass,
        layer_profiler=layer_profiler,
    )
    if runner is not None:
        runner.set_up(engine, checkpoint, process)
    if log_folder is not None:  # after set-up: the log records the method's resolved arguments (VEA's layers)
        from models.attention_log import AttentionLogWriter

        arguments = runner.arguments() if runner is not None else {}
        engine.attach_attention_log(AttentionLogWriter(log_folder, process.rank, name, checkpoint.depth, arguments))
    if runner is not None:
        runner.announce_preset()
    return engine


# the model arguments every model takes, in the docs' order (the adapter adds batch_size)
COMMON_ARGUMENTS = tuple(
    name
    for name, parameter in inspect.signature(load_engine).parameters.items()
    if parameter.kind is parameter.POSITIONAL_OR_KEYWORD and name not in ("name", "families", "method")
)


class UnknownArguments(ValueError):
    """Model arguments no model of this name takes (the caller names the valid ones)."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names
