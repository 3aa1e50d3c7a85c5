"""An engine by ``--model`` name, for the commands that answer without lmms-eval (the sweep, the viewer's live
re-run, the benchmarks), and the layer profiler every engine here gets.

The lmms-eval models (``plugin.vlm``) load the same way, so a model argument means the same in every command.
"""

from __future__ import annotations

from typing import Any

from models.engine import Engine
from models.loading import UnknownArguments, load_engine
from models.methods import METHODS
from models.names import scheme_of
from profiling import run_profile

LAYER_PROFILER = run_profile  # VEA's first-use profiling (``models.vea_layers``) on the engine it set up


def engine_for(name: str, **arguments: Any) -> Engine:
    """The engine of ``--model name`` with ``--model_args`` ``arguments`` (and ``load_engine``'s keyword-only
    ``process`` and ``rows_per_pass``), without lmms-eval."""
    scheme, method = scheme_of(name, METHODS)
    try:
        return load_engine(
            name, scheme.model_types, METHODS[method] if method else None, layer_profiler=LAYER_PROFILER, **arguments
        )
    except UnknownArguments as error:
        raise ValueError(f"unknown model argument(s) for {name}: {error}") from None


def accelerate_process() -> Any:
    """This process among data-parallel ones (``accelerate launch``; one process otherwise), and its accelerator."""
    from accelerate import Accelerator

    from models.host import Process

    accelerator = Accelerator()
    process = Process(
        accelerator.process_index,
        accelerator.num_processes,
        accelerator.local_process_index,
        accelerator.wait_for_everyone,
    )
    return process, accelerator
