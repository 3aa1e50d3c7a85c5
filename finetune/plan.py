"""Which rows each process trains on at each optimizer step: a pure function of (seed, step).

Step ``s`` of epoch ``e`` takes the ``s``-th slice of ``effective_batch`` rows from
a permutation seeded by ``(seed, e)``. Nothing depends on the iterator's
history, so a resumed run takes exactly the batches the uninterrupted run would
have, and the order is the same on any number of processes with the same
effective batch. Each global batch is cut into ``processes x accumulation``
micro-batches; micro-batch ``m * processes + rank`` belongs to ``rank``. When the
last batch of an epoch is short, a process whose micro-batch is empty gets a
zero-weight filler row so that every process runs the same number of forwards
and backwards (collectives must match).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Item = tuple[int, float]  # (position in the train list, loss weight)


@dataclass(frozen=True)
class Plan:
    n_train: int
    per_device_batch_size: int
    accumulation_steps: int
    num_processes: int
    seed: int

    @property
    def effective_batch(self) -> int:
        return self.per_device_batch_size * self.accumulation_steps * self.num_processes

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n_train / self.effective_batch)

    def total_steps(self, epochs: float, max_steps: int | None) -> int:
        """``max_steps`` when given (cycling through epochs), else ``ceil(epochs x steps per epoch)``."""
        return max_steps if max_steps is not None else max(1, math.ceil(epochs * self.steps_per_epoch))

    def epoch_of(self, step: int) -> float:
        return step / self.steps_per_epoch

    def global_batch(self, step: int) -> list[int]:
        """Train-list positions of optimizer step ``step`` (0-based), the same on every process."""
        epoch, position = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(self.n_train)
        return order[position * self.effective_batch : (position + 1) * self.effective_batch].tolist()

    def micro_batches(self, step: int, rank: int) -> list[list[Item]]:
        """This process's ``accumulation_steps`` micro-batches of step ``step``."""
        batch = self.global_batch(step)
        size = self.per_device_batch_size
        result = []
        for micro in range(self.accumulation_steps):
            chunk = micro * self.num_processes + rank
            positions = batch[chunk * size : (chunk + 1) * size]
            result.append([(p, 1.0) for p in positions] if positions else [(batch[0], 0.0)])
        return result


def eval_batches(n_items: int, batch_size: int, rank: int, num_processes: int) -> list[list[Item]]:
    """This process's share of the held-out rows, padded with zero-weight fillers to the same batch count
    on every process."""
    if n_items == 0:
        return []
    mine = list(range(rank, n_items, num_processes))
    per_process = math.ceil(n_items / num_processes)
    items: list[Item] = [(p, 1.0) for p in mine] + [(0, 0.0)] * (per_process - len(mine))
    return [items[i : i + batch_size] for i in range(0, per_process, batch_size)]
