"""The held-out slice of a VSR train split: one definition for ``python -m finetune`` and the ``*_heldout`` tasks.

Fine-tuning selects its checkpoint on a seeded slice of the TRAIN split, never on dev or test. The same slice
(with finetune's defaults) is what hyperparameter sweeps tune on: rows the model never trained on, so that dev
and test stay untouched until the final evaluation. Both read it from here, so they can never disagree.
"""

from __future__ import annotations

import numpy as np

DEFAULT_FRACTION = 0.05  # finetune --eval_fraction
DEFAULT_SEED = 0  # finetune --eval_split_seed
SPLIT_NAME = "heldout"  # the tasks' test_split: "the held-out slice of train"


def held_out_positions(n_rows: int, fraction: float = DEFAULT_FRACTION, seed: int = DEFAULT_SEED):
    """(train, held-out) row positions in train.jsonl: a seeded permutation, the held-out slice from its front.

    Both arrays are sorted. ``fraction > 0`` holds out at least one row.
    """
    order = np.random.default_rng(seed).permutation(n_rows)
    n_held_out = int(round(fraction * n_rows))
    if fraction > 0:
        n_held_out = max(1, n_held_out)
    return np.sort(order[n_held_out:]), np.sort(order[:n_held_out])


def held_out_rows(train_rows: list[dict]) -> list[dict]:
    """The rows of a train split that finetune holds out with its defaults, in train.jsonl order."""
    _, held_out = held_out_positions(len(train_rows))
    return [train_rows[position] for position in held_out.tolist()]
