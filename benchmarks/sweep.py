"""Wall time of a 27-point sweep against one ``qwen3vl`` evaluation of the same documents, in one process.

Not a test: the measurement behind the sweep's cost target (<= 3x one baseline evaluation for 27 AdaptVis or
CLVS settings; a naive grid of lmms-eval runs costs 27x, 54x for AdaptVis' two passes). The documents are a
synthetic VSR held-out slice (every image present); the baseline answers them as lmms-eval would
(the lmms-eval model's ``generate_until``, no answer cache), the sweeps through the sweep engine on an engine of their
own (the engine's ``answer`` per batch, the neutral setting included). The checkpoint is random-initialised (``--shape``, as in ``benchmarks.interventions``); weights
are shared between the models.

Usage::

    python -m benchmarks.sweep                                # tiny, CPU
    python -m benchmarks.sweep --shape 2b-wide --docs 8
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.interventions import share_weights
from benchmarks.shapes import build_checkpoint
from models.methods import METHODS
from plugin.loading import engine_for
from plugin.requests import RequestBatches
from sweep.engine import answer_all
from sweep.points import point, settings
from sweep.tasks import load_task
from vsr_tasks.data import DATA_DIR_VARIABLE

GRIDS = {  # 27 points per method, around the defaults
    "adaptvis": {
        "confidence_threshold": [0.6, 0.8, 0.9],
        "sharpen_weight": [1.1, 1.2, 1.5],
        "smoothen_weight": [0.1, 0.2, 0.5],
    },
    "clvs": {
        "smoothing": [0.5, 0.7, 0.9],
        "window_memory_size": [0.6, 0.8, 0.9],
        "uncertainty_threshold": [0.3, 0.5, 0.7],
    },
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=("tiny", "2b-wide"), default="tiny")
    parser.add_argument("--text-layers", type=int, default=8)
    parser.add_argument("--vision-layers", type=int, default=18)
    parser.add_argument("--docs", type=int, default=16, help="held-out documents evaluated (default 16)")
    parser.add_argument("--image-size", type=int, default=512, help="synthetic image side (512 -> 256 tokens)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args(argv)

    from models.names import STUDY
    from plugin import model_class
    from vsr_tasks.synthetic import generate

    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        data = scratch / "data"
        generate(data, n_train=args.docs * 20, n_dev=2, n_test=2, seed=0, image_size=args.image_size)  # 5% held out
        os.environ.update({DATA_DIR_VARIABLE: str(data), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
        checkpoint = build_checkpoint(
            "qwen3_vl", args.shape, scratch / args.shape, args.text_layers, args.vision_layers
        )
        common = {
            "pretrained": str(checkpoint),
            "device": args.device,
            "dtype": args.dtype,
            "max_pixels": args.image_size**2,
        }
        task = load_task("vsr_random_heldout", args.docs)
        documents = {task.name: task.task.dataset}
        baseline = model_class(STUDY.name(None))(**common, batch_size=args.batch_size, answer_cache="none")
        baseline.task_dict = documents  # as lmms-eval's evaluator hands a model its documents
        tokens = int(baseline.batches.prepare([task.requests[0].args]).image_token_mask.sum())
        baseline.generate_until(list(task.requests)[: args.batch_size])  # warm-up
        start = time.perf_counter()
        baseline.generate_until(list(task.requests))
        base_time = time.perf_counter() - start
        print(
            f"checkpoint={args.shape} docs={len(task.requests)} image_tokens={tokens} batch={args.batch_size} "
            f"threads={torch.get_num_threads()}"
        )
        print(f"{STUDY.name(None)} evaluation: {base_time:.2f} s (x1.00)")
        for method_name in ("adaptvis", "clvs"):
            name = STUDY.name(method_name)
            engine = engine_for(name, **common)
            share_weights(engine.model, baseline.model)
            grid_settings = settings(GRIDS[method_name])
            neutral = point(engine.method.params, METHODS[method_name].neutral)
            points = [point(engine.method.params, s) for s in grid_settings] + [neutral]
            out = scratch / f"sweep_{name}"
            out.mkdir()
            start = time.perf_counter()
            answer_all(engine, RequestBatches(engine, documents, args.batch_size), task.requests, points, out)
            elapsed = time.perf_counter() - start
            print(
                f"{name} sweep, {len(grid_settings)} settings + neutral: {elapsed:.2f} s "
                f"(x{elapsed / base_time:.2f} one evaluation; a grid of lmms-eval runs: x{len(points)} or more)"
            )


if __name__ == "__main__":
    main()
