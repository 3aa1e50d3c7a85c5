"""The benchmarks' memory accounting on CPU: exactly the bytes of the tensors an answer creates and holds."""

from __future__ import annotations

import torch

from benchmarks.memory import LiveTensorPeak, model_bytes, working_memory


def test_the_peak_is_the_bytes_of_the_tensors_alive_together():
    with LiveTensorPeak() as tracker:
        first = torch.zeros(1000, dtype=torch.float32)  # 4,000 bytes
        second = torch.ones(250, dtype=torch.float64)  # 2,000
        assert (tracker.live, tracker.peak) == (6000, 6000)
        del first
        assert (tracker.live, tracker.peak) == (2000, 6000)
        third = torch.full((100,), 3, dtype=torch.int8)  # 100: below the peak
        assert (tracker.live, tracker.peak) == (2100, 6000)
        fourth = torch.zeros(2000, dtype=torch.float32)  # 8,000: a new peak
        assert (tracker.live, tracker.peak) == (10100, 10100)
        del second, third, fourth
    assert (tracker.live, tracker.peak) == (0, 10100)


def test_a_storage_is_counted_once_and_freed_with_its_last_tensor():
    with LiveTensorPeak() as tracker:
        base = torch.zeros(64, dtype=torch.float32)  # 256 bytes
        view = base.view(8, 8)
        base.add_(1)  # in place: no new storage
        assert (tracker.live, tracker.peak) == (256, 256)
        del base
        assert tracker.live == 256  # the view still holds the storage
        del view
        assert tracker.live == 0
    assert tracker.peak == 256


def test_tensors_made_before_the_block_are_not_counted():
    weights = torch.zeros(10_000, dtype=torch.float32)
    with LiveTensorPeak() as tracker:
        part = weights[:100]
        weights.mul_(2)
        result = weights[:10] + 1  # 10 new floats: 40 bytes
    assert tracker.peak == 40
    del part, result


def test_working_memory_on_cpu_is_the_peak_above_what_was_in_use():
    held = torch.zeros(1_000_000)  # in use before: not counted

    def answer():
        scratch = torch.zeros(256, dtype=torch.float64)  # 2,048 bytes, freed before the answer's 512 are made
        del scratch
        return torch.zeros(128, dtype=torch.float32)  # 512

    assert working_memory(answer, torch.device("cpu")) == 2048
    assert held.numel() == 1_000_000


def test_model_bytes_count_parameters_and_buffers():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    # Linear: 12 + 3 float32; BatchNorm: 3 + 3 float32 parameters, 3 + 3 float32 buffers, an int64 counter
    assert model_bytes(model) == (12 + 3) * 4 + (3 + 3) * 4 + (3 + 3) * 4 + 8
    assert model_bytes(model.to(torch.float16)) == (12 + 3 + 3 + 3 + 3 + 3) * 2 + 8
