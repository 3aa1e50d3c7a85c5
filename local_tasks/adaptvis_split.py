"""AdaptVis' split of each dataset into a tuning fifth and a test rest: one rule for its VSR protocol and WhatsUp.

shiqichen17/AdaptVis 3b41399 ``main_aro.py:43-64`` (and ``model_zoo/llava15.py:315-340``, which reuses the indices
main_aro saved in ``output/sampled_idx_{dataset}.npy``): after ``seed_all(args.seed)`` (``main_aro.py:40``;
``misc/__init__.py:12-13``: ``random.seed``; ``--seed`` defaults to 1, ``main_aro.py:23``) the run always takes
``random.sample(range(N), int(0.2 * N))`` (``main_aro.py:55-56``, sorted) over the dataset's N rows: the fifth the
thresholds were tuned on. With ``TEST_MODE=True``
(``main_aro.py:44, 60-63``; the later ``run.sh`` its settings come from exports it on its line 2) it evaluates the
complement instead. Nothing between
the seed and the sample draws from Python's ``random`` (``get_model`` and ``get_dataset`` only load files), so the
parts are reproduced here with a seeded ``random.Random``; each dataset is its own run, so each sample starts from the
seed.

A task's parts are tasks of their own: ``<task>_adaptvis`` (the test rest) and ``<task>_adaptvis_tune`` (the fifth).
"""

from __future__ import annotations

import random

SEED = 1  # shiqichen17/AdaptVis 3b41399 main_aro.py:23 (--seed default 1)
TUNE_SHARE = 0.2  # main_aro.py:55 (int(0.2 * total_data_count))
PARTS = ("tune", "test")
TASK_SUFFIX = {"test": "_adaptvis", "tune": "_adaptvis_tune"}


def part_indices(n: int, part: str) -> list[int]:
    """The rows of an ``n``-row dataset AdaptVis uses for ``part``: ``tune`` (its sampled fifth) or ``test`` (the
    rest), in row order."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)}, got {part!r}")
    sampled = sorted(random.Random(SEED).sample(range(n), int(TUNE_SHARE * n)))
    if part == "tune":
        return sampled
    chosen = set(sampled)
    return [index for index in range(n) if index not in chosen]


def task_lineage(task: str) -> list[str]:
    """``task``, then the tasks it is a part of: ``whatsup_vg_one_adaptvis_tune`` -> itself,
    ``whatsup_vg_one_adaptvis``, ``whatsup_vg_one``. A preset's per-task setting is looked up along it, so a part
    takes its dataset's setting unless it has its own."""
    lineage = [task]
    if task.endswith(TASK_SUFFIX["tune"]):
        lineage.append(task[: -len(TASK_SUFFIX["tune"])] + TASK_SUFFIX["test"])
    if lineage[-1].endswith(TASK_SUFFIX["test"]):
        lineage.append(lineage[-1][: -len(TASK_SUFFIX["test"])])
    return lineage
