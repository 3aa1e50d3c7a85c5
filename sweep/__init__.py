"""Hyperparameter sweeps (``python -m sweep``): a grid of one method's settings on one lmms-eval task.

Tuned on rows that fine-tuning never saw (``vsr_<type>_heldout``), so that dev and test stay untouched until
the final evaluation; dev and test are refused unless ``--allow_eval_split`` says otherwise. The expensive part
is shared across the grid through the engine's ``answer`` (``models.engine``): AdaptVis and CLVS answer every setting
from one prefix forward per batch (the settings run together, the batch repeated once per setting), VEA runs
one attribution pass per batch for all its settings. The neutral setting of the method is always evaluated:
it is the baseline of the paired comparisons.

Modules: :mod:`sweep.points` (parsing and checking ``--grid``), :mod:`sweep.tasks` (documents and scoring through
lmms-eval's own task machinery), :mod:`sweep.engine` (answering, resumable, one share of the batches per
process), :mod:`sweep.results` (statistics and the output files), :mod:`sweep.cli` (the command line).
"""
