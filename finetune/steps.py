"""The arithmetic of one step: per-example answer loss, one optimizer step, one held-out evaluation.

The loss of a step is the mean, over its real examples, of each example's mean
token loss on the answer (+ ``<|im_end|>``), whatever the number of processes or
micro-batches; zero-weight fillers (see ``finetune.plan``) add nothing. Logits
are computed only at the answer positions (a ``logits_to_keep`` mask), never for
the whole sequence x vocabulary (151k for Qwen3-VL).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch.utils.data import DataLoader, Dataset

from finetune.collate import IGNORE_INDEX, Collator
from finetune.data import Example
from finetune.plan import Item, eval_batches

BATCH_ONLY_KEYS = ("labels", "weights", "indices")


class _Items(Dataset):
    """Map-style view of examples, indexed by (position, weight) items from the plan."""

    def __init__(self, examples: list[Example]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, item: Item) -> tuple[Example, float]:
        position, weight = item
        return self.examples[position], weight


def loader(examples: list[Example], batches: list[list[Item]], collator: Collator, workers: int) -> DataLoader:
    """Batches in exactly the given order; the loader's own generator keeps it from drawing on the global RNG
    (which LoRA dropout uses and a checkpoint restores)."""
    return DataLoader(
        _Items(examples),
        batch_sampler=batches,
        collate_fn=collator,
        num_workers=workers,
        generator=torch.Generator().manual_seed(0),
    )


def example_losses(model: Any, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example mean answer-token loss ``[B]`` and whether every answer token is the argmax ``[B]``."""
    labels = batch["labels"]
    targets = torch.full_like(labels, IGNORE_INDEX)
    targets[:, :-1] = labels[:, 1:]  # position p predicts token p + 1
    keep = targets != IGNORE_INDEX
    inputs = {key: value for key, value in batch.items() if key not in BATCH_ONLY_KEYS}
    logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits.float()  # [K, V], row-major over keep
    wanted = targets[keep]
    token_loss = F.cross_entropy(logits, wanted, reduction="none")
    rows = keep.nonzero()[:, 0]
    zeros = torch.zeros(labels.shape[0], device=logits.device)
    counts = zeros.index_add(0, rows, torch.ones_like(token_loss))
    losses = zeros.index_add(0, rows, token_loss) / counts
    wrong = zeros.index_add(0, rows, (logits.argmax(-1) != wanted).float())
    return losses, wrong == 0


def optimizer_step(
    model: Any,
    optimizer: Any,
    accelerator: Accelerator,
    micro_batches: Iterator[dict],
    accumulation: int,
    global_size: int,
    max_grad_norm: float,
) -> tuple[torch.Tensor, float | None, list[int]]:
    """Run ``accumulation`` micro-batches and one optimizer step; returns (this process's weighted loss sum,
    gradient norm before clipping, the train rows it trained on)."""
    loss_sum = torch.zeros((), device=accelerator.device)
    grad_norm, rows = None, []
    for batch in itertools.islice(micro_batches, accumulation):
        batch = {key: value.to(accelerator.device) for key, value in batch.items()}
        with accelerator.accumulate(model):
            with accelerator.autocast():
                losses, _ = example_losses(model, batch)
            weighted = (batch["weights"] * losses).sum()
            # backward divides by the accumulation and data parallelism averages over processes:
            # scale back so that the step's gradient is that of the mean over the global batch
            accelerator.backward(weighted * accumulation * accelerator.num_processes / global_size)
            if accelerator.sync_gradients and max_grad_norm > 0:
                norm = accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
                grad_norm = float(norm) if norm is not None else None  # DeepSpeed clips inside and returns None
            optimizer.step()
            optimizer.zero_grad()
        loss_sum += weighted.detach()
        rows += [int(i) for i, w in zip(batch["indices"], batch["weights"]) if w > 0]
    if not accelerator.sync_gradients:
        raise RuntimeError("micro-batches ran out before the optimizer step (internal error)")
    return loss_sum, grad_norm, rows


@torch.no_grad()
def evaluate(
    model: Any, examples: list[Example], collator: Collator, accelerator: Accelerator, batch_size: int, workers: int
) -> dict[str, float]:
    """Held-out loss and answer accuracy (teacher-forced: every answer token is the argmax), over all processes."""
    batches = eval_batches(len(examples), batch_size, accelerator.process_index, accelerator.num_processes)
    totals = torch.zeros(3, device=accelerator.device)  # loss sum, correct, count
    model.eval()
    for batch in loader(examples, batches, collator, workers):
        batch = {key: value.to(accelerator.device) for key, value in batch.items()}
        with accelerator.autocast():
            losses, correct = example_losses(model, batch)
        weights = batch["weights"]
        totals += torch.stack([(weights * losses).sum(), (weights * correct.float()).sum(), weights.sum()])
    model.train()
    totals = accelerator.reduce(totals, reduction="sum")
    count = max(float(totals[2]), 1.0)
    return {"eval_loss": float(totals[0]) / count, "eval_accuracy": float(totals[1]) / count}
