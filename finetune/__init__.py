"""Supervised fine-tuning on a VSR train split (``python -m finetune``), any supported model family.

The checkpoints the interventions are studied on are fine-tuned ones, so the
training text is exactly the evaluation prompt (imported from ``vsr_tasks``) and
only the answer is trained on. Modules, one job each:

- ``args``: the command line and its checks;
- ``data``: the train rows, the held-out slice of the train split, image files;
- ``collate``: chat text, processing, and the label mask on the processed ids;
- ``model``: loading, ``--freeze_vision``, LoRA, optimizer parameter groups;
- ``plan``: which rows each process trains on at each step (deterministic, so resuming is exact);
- ``checkpoint``: saving loadable checkpoints (processor included; LoRA merged) and the training state;
- ``steps``: the per-example answer loss, one optimizer step, one held-out evaluation;
- ``tracking``: metric log (jsonl), optional Aim, the per-process data-order record;
- ``train``: setting a run up with accelerate, resuming it, and the loop over steps;
- ``cli``: ``python -m finetune``.
"""
