"""Memory of one answer, for the cost benchmarks: the weights a model holds and the working memory an answer adds.

On CUDA the allocator's statistics (``torch.cuda.max_memory_allocated``) say it; on CPU, where the allocator keeps
none, :class:`LiveTensorPeak` follows the tensors themselves.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


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


def working_memory(answer: Callable[[], Any], device: torch.device) -> int:
    """Peak bytes above what was in use before one call of ``answer`` on ``device``."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        in_use = torch.cuda.memory_allocated(device)
        answer()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - in_use
    with LiveTensorPeak() as tracker:
        answer()
    return tracker.peak


def model_bytes(model: torch.nn.Module) -> int:
    """Bytes of a model's parameters and buffers."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)
