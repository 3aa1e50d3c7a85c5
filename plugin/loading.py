"""An engine by ``--model`` name, for the commands that answer without lmms-eval (the sweep, the viewer's live
re-run, the benchmarks), and the layer profiler every engine here gets.

The lmms-eval models (``plugin.vlm``) load the same way, so a model argument means the same in every command.
"""

from __future__ import annotations

import atexit
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
    if accelerator.num_processes > 1:
        atexit.unregister(_end_process_group)  # registered once, however many models a run builds
        atexit.register(_end_process_group)
    process = Process(
        accelerator.process_index,
        accelerator.num_processes,
        accelerator.local_process_index,
        accelerator.wait_for_everyone,
    )
    return process, accelerator


def _end_process_group() -> None:
    """Destroy the data-parallel process group while Python can still run its threads.

    Neither lmms-eval nor accelerate destroys it, and under load a gloo worker thread may still be releasing the last
    barrier's work (and the Python tensors an earlier broadcast left in it) when the interpreter finalizes: taking the
    GIL then ends the thread inside a destructor, ``std::terminate`` aborts the process ("terminate called without an
    active exception", exit -6) after every result was written, and torchrun reports the run failed. Destroying the
    group joins its threads first; at exit every rank has passed lmms-eval's last barrier, so no collective is cut.
    """
    import torch.distributed as distributed

    if distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()
