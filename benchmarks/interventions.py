"""Wall time and peak memory of each intervention model relative to ``qwen3vl``, in one process.

Not a test: a measurement to compare against the targets of issue 3 (CLVS <= 1.15x the
baseline's time, AdaptVis <= 2.1x, peak memory of either <= 1.1x). Every model answers
the same prepared batch (one large image, >= 1,000 image tokens by default) with the
same generation settings, after one warm-up answer each.
All models are loaded at once and answer in rounds (each once per round), so a busy
machine disturbs them alike; the time is each model's fastest round. Peak memory is what
the model alone would need: its weights plus the peak working memory of an answer above
what was in use before it (``torch.cuda.max_memory_allocated`` on CUDA; on CPU, where the
allocator keeps no statistics, the peak of live tensor storage seen by a dispatch mode).

Usage::

    python -m benchmarks.interventions                       # tiny checkpoint, CPU
    python -m benchmarks.interventions --pretrained PATH --device cuda

Adding a model: one entry in :data:`MODELS`, name -> (class path, extra model arguments).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import tempfile
import time
import weakref
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from tqdm import tqdm

from models.qwen3vl import GenerationSettings

MODELS: dict[str, tuple[str, dict]] = {
    "qwen3vl": ("models.qwen3vl.Qwen3VL", {}),
    "qwen3vl_adaptvis": ("models.qwen3vl_adaptvis.Qwen3VLAdaptVis", {}),
    "qwen3vl_clvs": ("models.qwen3vl_clvs.Qwen3VLCLVS", {}),
    # three layers, as profiling keeps on a 28-layer model; valid on the 4-layer tiny checkpoint too
    "qwen3vl_vea": ("models.qwen3vl_vea.Qwen3VLVEA", {"layers": "[1,2,3]"}),
}
BASELINE = "qwen3vl"
CONTEXT = "Look at the image and decide whether the statement is True or False.\nStatement: The cat is left of the dog.\nAnswer with exactly one word: True or False."


def _load_class(path: str):
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


class LiveTensorPeak(TorchDispatchMode):
    """Peak bytes of tensor storage created inside the block and still alive (CPU has no allocator stats).

    Every op's outputs are counted once per storage and released when the last tensor seen on that
    storage is collected. Weights created before the block are not counted; buffers internal to one
    kernel are not seen, so this is the working memory of the answer as Python tensors hold it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._owners: dict[int, list[int]] = {}  # storage pointer -> [tensors alive, bytes]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        output = func(*args, **(kwargs or {}))
        inputs = {
            t.untyped_storage().data_ptr()
            for t in tree_flatten((args, kwargs or {}))[0]
            if isinstance(t, torch.Tensor) and t.device.type == "cpu"
        }
        for tensor in tree_flatten(output)[0]:
            if isinstance(tensor, torch.Tensor) and tensor.device.type == "cpu":
                pointer = tensor.untyped_storage().data_ptr()
                if pointer in inputs and pointer not in self._owners:
                    continue  # a view of (or an in-place op on) memory that existed before the block
                self._track(tensor)
        return output

    def _track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        pointer, size = storage.data_ptr(), storage.nbytes()
        if size == 0:
            return
        owner = self._owners.get(pointer)
        if owner is None:
            owner = self._owners[pointer] = [0, size]
            self.live += size
            self.peak = max(self.peak, self.live)
        owner[0] += 1
        weakref.finalize(tensor, self._release, pointer)

    def _release(self, pointer: int) -> None:
        owner = self._owners.get(pointer)
        if owner is None:
            return
        owner[0] -= 1
        if owner[0] == 0:
            self.live -= owner[1]
            del self._owners[pointer]


def _working_memory(wrapper, batch, settings: GenerationSettings) -> int:
    """Peak bytes above what was in use before one answer."""
    device = wrapper.device
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        in_use = torch.cuda.memory_allocated(device)
        wrapper.respond(batch, settings)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - in_use
    with LiveTensorPeak() as tracker:
        wrapper.respond(batch, settings)
    return tracker.peak


def _model_bytes(model: torch.nn.Module) -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


class Contender:
    """One loaded model and its prepared batch; :meth:`run` times one answer and its working memory."""

    def __init__(self, name: str, common: dict, images: list[Image.Image]) -> None:
        class_path, extra = MODELS[name]
        self.name = name
        self.wrapper = _load_class(class_path)(**common, **extra)
        self.batch = self.wrapper.prepare_batch(
            [CONTEXT] * len(images), [[image] for image in images], list(range(len(images))), ["bench"] * len(images)
        )
        self.weights = _model_bytes(self.wrapper.model)
        self.times: list[float] = []
        self.working = 0  # peak bytes above what was in use before the answer

    def run(self, settings: GenerationSettings) -> None:
        device = self.wrapper.device
        start = time.perf_counter()
        self.answer = self.wrapper.respond(self.batch, settings).texts[0]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.times.append(time.perf_counter() - start)

    def measure_memory(self, settings: GenerationSettings) -> None:
        self.working = _working_memory(self.wrapper, self.batch, settings)

    @property
    def time(self) -> float:
        return min(self.times)  # the least disturbed run (shared machines)

    @property
    def peak(self) -> int:
        """Weights of this model plus the working memory of its answer: what it alone would peak at."""
        return self.weights + self.working


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", help="a Qwen3-VL checkpoint folder (default: a tiny one built here)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument(
        "--image-side", type=int, default=1024, help="square image side in pixels (1024 -> 1,024 tokens)"
    )
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in names if name not in MODELS]
    if unknown:
        parser.error(f"--models: unknown {unknown}; known: {', '.join(MODELS)}")
    if BASELINE not in names:
        names.insert(0, BASELINE)

    with tempfile.TemporaryDirectory() as scratch:
        pretrained = args.pretrained
        if pretrained is None:
            from models.tiny import build_tiny_checkpoint

            pretrained = str(build_tiny_checkpoint(Path(scratch) / "tiny"))
        side = args.image_side
        rng = np.random.default_rng(0)
        images = [
            Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)) for _ in range(args.batch_size)
        ]
        common = {
            "pretrained": pretrained,
            "device": args.device,
            "dtype": args.dtype,
            "batch_size": args.batch_size,
            "max_pixels": side * side,
        }
        settings = GenerationSettings(max_new_tokens=args.max_new_tokens, until=[])
        contenders = [Contender(name, common, images) for name in names]
        for contender in contenders:  # warm-up, and the memory measurement (not timed)
            contender.measure_memory(settings)
        for _ in tqdm(range(args.repeats), desc="rounds (every model once per round)"):
            for contender in contenders:
                contender.run(settings)
        results = {
            contender.name: {
                "time": contender.time,
                "peak": contender.peak,
                "image_tokens": int(contender.batch.image_token_mask[0].sum()),
                "prompt_tokens": int(contender.batch.inputs["input_ids"].shape[1]),
            }
            for contender in contenders
        }

    base = results[BASELINE]
    print(
        f"checkpoint={args.pretrained or 'tiny'} image_tokens={base['image_tokens']} prompt_tokens={base['prompt_tokens']} "
        f"batch={args.batch_size} max_new_tokens={args.max_new_tokens} repeats={args.repeats}"
    )
    for name, result in results.items():
        print(
            f"{name:18s} time {result['time'] * 1000:9.1f} ms  x{result['time'] / base['time']:.3f}   "
            f"peak {result['peak'] / 2**20:9.1f} MiB  x{result['peak'] / base['peak']:.3f}"
        )


if __name__ == "__main__":
    main()
