"""The training run: accelerate for devices and distribution, a deterministic data plan, exact resume.

One optimizer step = ``gradient_accumulation_steps`` micro-batches on every
process (``finetune.steps``); which rows they hold is a pure function of the
seed and the step (``finetune.plan``), and a checkpoint holds the weights,
optimizer, scheduler and RNG states (``finetune.checkpoint``), so a resumed run
continues exactly where the interrupted one stood. DeepSpeed / FSDP come from
``accelerate config``, nothing here is specific to them.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import parse_flag_from_env, set_seed
from tqdm import tqdm
from transformers import get_scheduler

from finetune import checkpoint as ckpt
from finetune.args import accumulation_steps, lora_targets
from finetune.augment import DimAugmentation, parse_strength
from finetune.collate import Collator
from finetune.data import Splits, load_splits
from finetune.model import (
    add_lora,
    count_parameters,
    freeze_vision,
    load_model,
    parameter_groups,
    resolve_checkpoint,
)
from finetune.plan import Plan
from finetune.steps import evaluate, loader, optimizer_step
from finetune.tracking import DataOrderLog, MetricLog, check_aim_available

CPU_LAUNCH_NOTE = (
    "finetune: note: `accelerate launch --cpu` starts ONE process whatever --num_processes says (unless MPI is "
    "configured); for N CPU processes use: ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N "
    "-m finetune ..."
)


@dataclass
class Session:
    """Everything a run holds between steps."""

    args: argparse.Namespace
    accelerator: Accelerator
    output_dir: Path
    splits: Splits
    processor: Any
    collator: Collator  # training rows (with the --dim_share augmentation)
    eval_collator: Collator  # held-out rows, never augmented
    model: Any
    optimizer: Any
    scheduler: Any
    plan: Plan
    accumulation: int
    total_steps: int
    trainable: int
    total_parameters: int
    start_step: int = 0
    stopped_at: int | None = None  # the step whose evaluation reached --stop_at_accuracy
    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"checkpoint": None, "eval_loss": None})

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def end_step(self) -> int:
        return min(self.total_steps, self.args.stop_at_step or self.total_steps)

    @property
    def save_every(self) -> int:
        return self.args.save_steps or self.plan.steps_per_epoch

    def data_settings(self) -> dict:
        """What must not change between an interrupted run and its resumption (else the data order changes)."""
        return {
            "seed": self.args.seed,
            "effective_batch": self.plan.effective_batch,
            "n_train": len(self.splits.train),
            "n_held_out": len(self.splits.held_out),
            "dataset_type": self.args.dataset_type,
            "eval_fraction": self.args.eval_fraction,
            "eval_split_seed": self.args.eval_split_seed,
            **self.augmentation_settings(),
        }

    def augmentation_settings(self) -> dict:
        """Absent when off, so that checkpoints from before --dim_share existed resume as they did."""
        if not self.args.dim_share:
            return {}
        return {"dim_share": self.args.dim_share, "dim_strength": list(parse_strength(self.args.dim_strength))}

    def evaluate(self) -> dict[str, float]:
        args = self.args
        return evaluate(
            self.model,
            self.splits.held_out,
            self.eval_collator,
            self.accelerator,
            args.eval_batch_size or args.per_device_batch_size,
            args.dataloader_num_workers,
        )


def _prepare_output_dir(args: argparse.Namespace) -> Path:
    output_dir = Path(args.output_dir)
    existing = ckpt.list_checkpoints(output_dir)
    if existing and args.resume_from_checkpoint is None and not args.overwrite_output_dir:
        raise FileExistsError(
            f"--output_dir {output_dir} already holds {existing[-1].name}: pass --resume_from_checkpoint latest "
            "to continue, or --overwrite_output_dir to start again"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    return output_dir


def _augmentation(args: argparse.Namespace) -> DimAugmentation | None:
    if not args.dim_share:
        return None
    return DimAugmentation(args.dim_share, parse_strength(args.dim_strength), args.seed)


def build_session(args: argparse.Namespace) -> Session:
    """Accelerator, data, model (frozen parts, LoRA), optimizer and schedule, prepared for the devices."""
    if args.log_with_aim:
        check_aim_available()
    # the process count decides the default accumulation, and the Accelerator needs that when it is built;
    # AcceleratorState reads ACCELERATE_USE_CPU itself, a bare PartialState does not
    processes = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU")).num_processes
    accumulation = accumulation_steps(args, processes)
    accelerator = Accelerator(
        gradient_accumulation_steps=accumulation,
        mixed_precision="bf16" if args.bf16 else "no",
        log_with="aim" if args.log_with_aim else None,
        project_dir=args.aim_repo or args.output_dir,
    )
    output_dir = _prepare_output_dir(args)
    set_seed(args.seed)
    splits = load_splits(
        args.vsr_data_dir,
        args.dataset_type,
        image_dir=args.image_dir,
        eval_fraction=args.eval_fraction,
        eval_split_seed=args.eval_split_seed,
        max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples,
        skip_missing_images=args.skip_missing_images,
    )
    checkpoint = resolve_checkpoint(args.model_id, args.min_pixels, args.max_pixels)
    family, processor = checkpoint.family, checkpoint.processor
    model = load_model(checkpoint, args.gradient_checkpointing)
    if args.use_lora:
        targets = lora_targets(args)
        model = add_lora(model, args.lora_r, args.lora_alpha, args.lora_dropout, targets, args.gradient_checkpointing)
    if args.freeze_vision:  # after LoRA, so adapters on vision modules (if targeted) stay frozen too
        freeze_vision(model, family)
    trainable, total_parameters = count_parameters(model)
    optimizer = torch.optim.AdamW(parameter_groups(model, args.weight_decay), lr=args.learning_rate)
    plan = Plan(len(splits.train), args.per_device_batch_size, accumulation, accelerator.num_processes, args.seed)
    total_steps = plan.total_steps(args.epochs, args.max_steps)
    scheduler = get_scheduler(
        args.lr_scheduler_type, optimizer, num_warmup_steps=args.warmup_steps, num_training_steps=total_steps
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)  # stepped here once per optimizer step, saved with the state
    return Session(
        args=args,
        accelerator=accelerator,
        output_dir=output_dir,
        splits=splits,
        processor=processor,
        collator=Collator(processor, augment=_augmentation(args)),
        eval_collator=Collator(processor),
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        plan=plan,
        accumulation=accumulation,
        total_steps=total_steps,
        trainable=trainable,
        total_parameters=total_parameters,
    )


def resume(session: Session, checkpoint: str) -> None:
    """Restore weights, optimizer, scheduler and RNG from a checkpoint and continue at its step."""
    folder = ckpt.resolve_resume(session.output_dir, checkpoint)
    state = ckpt.read_trainer_state(folder)
    saved, now = state["data_settings"], session.data_settings()
    changed = {key: (saved.get(key), value) for key, value in now.items() if saved.get(key) != value}
    if changed:
        raise ValueError(f"--resume_from_checkpoint {folder}: the run's data settings changed (was, now): {changed}")
    session.accelerator.load_state(str(folder / ckpt.TRAINING_STATE))
    session.start_step, session.history, session.best = state["global_step"], state["log_history"], state["best"]


def _announce(session: Session) -> None:
    args, plan = session.args, session.plan
    if session.splits.missing_images:
        print(f"finetune: skipped {len(session.splits.missing_images)} row(s) whose image is missing")
    print(
        f"finetune: {len(session.splits.train)} train / {len(session.splits.held_out)} held-out rows of "
        f"{args.dataset_type}/train.jsonl; {session.accelerator.num_processes} process(es) x "
        f"{args.per_device_batch_size} x {session.accumulation} accumulation = effective batch "
        f"{plan.effective_batch}; {session.total_steps} steps ({plan.steps_per_epoch}/epoch), trainable "
        f"{session.trainable:,} of {session.total_parameters:,} parameters; checkpoints every {session.save_every} "
        f"steps in {session.output_dir}"
    )
    if session.accelerator.num_processes == 1 and os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true":
        print(CPU_LAUNCH_NOTE)


def _save(session: Session, step: int, record: dict) -> None:
    folder = ckpt.checkpoint_dir(session.output_dir, step)
    best = session.best
    if "eval_loss" in record and (best["eval_loss"] is None or record["eval_loss"] < best["eval_loss"]):
        session.best = {"checkpoint": str(folder), "eval_loss": record["eval_loss"], "step": step}
    state = {
        "global_step": step,
        "total_steps": session.total_steps,
        "epoch": record["epoch"],
        "data_settings": session.data_settings(),
        "log_history": session.history,
        "best": session.best,
    }
    ckpt.save_checkpoint(session.accelerator, session.model, session.processor, folder, state, session.args.use_lora)
    if session.main:
        protect = Path(session.best["checkpoint"]) if session.best["checkpoint"] else None
        ckpt.prune_checkpoints(session.output_dir, session.args.save_total_limit, protect)


def run(args: argparse.Namespace) -> dict:
    """Train as ``args`` say; returns the run summary (also written to OUTPUT/trainer_state.json)."""
    session = build_session(args)
    accelerator = session.accelerator
    if args.resume_from_checkpoint is not None:
        resume(session, args.resume_from_checkpoint)
    if args.eval_fraction > 0 and not session.splits.held_out:
        raise ValueError("--eval_fraction > 0 but the held-out slice is empty")
    if session.main:
        _announce(session)
    if args.log_with_aim:
        accelerator.init_trackers("finetune", config={k: v for k, v in vars(args).items() if v is not None})
    metric_log = MetricLog(session.output_dir, session.main)
    order_log = DataOrderLog(session.output_dir, accelerator.process_index, session.start_step or None)

    def log(record: dict) -> None:
        session.history.append(record)
        metric_log.write(record)
        if args.log_with_aim:
            accelerator.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])

    plan, rank = session.plan, accelerator.process_index
    steps = range(session.start_step, session.end_step)
    micro_batches = iter(
        loader(
            session.splits.train,
            [micro for step in steps for micro in plan.micro_batches(step, rank)],
            session.collator,
            args.dataloader_num_workers,
        )
    )
    progress = tqdm(total=session.total_steps, initial=session.start_step, desc="finetune", disable=not session.main)
    if session.start_step == 0 and session.splits.held_out:  # the baseline that fine-tuning has to beat
        record = {"step": 0, "epoch": 0.0, **session.evaluate()}
        progress.write(f"step 0: held-out loss {record['eval_loss']:.4f}, accuracy {record['eval_accuracy']:.4f}")
        log(record)
    session.model.train()
    for step in steps:
        started, done = time.perf_counter(), step + 1
        global_size = len(plan.global_batch(step))
        loss_sum, grad_norm, rows = optimizer_step(
            session.model,
            session.optimizer,
            accelerator,
            micro_batches,
            session.accumulation,
            global_size,
            args.max_grad_norm,
        )
        session.scheduler.step()
        order_log.write(done, rows)
        record = {
            "step": done,
            "epoch": round(plan.epoch_of(done), 4),
            "train_loss": float(accelerator.reduce(loss_sum, reduction="sum")) / global_size,
            "learning_rate": session.scheduler.get_last_lr()[0],
            "seconds": round(time.perf_counter() - started, 3),
        }
        if grad_norm is not None:
            record["grad_norm"] = grad_norm
        progress.update(1)
        progress.set_postfix(loss=f"{record['train_loss']:.4f}", lr=f"{record['learning_rate']:.2e}")
        save_now = done % session.save_every == 0 or done == session.end_step
        if session.splits.held_out and (save_now or (args.eval_steps and done % args.eval_steps == 0)):
            record.update(session.evaluate())
            progress.write(
                f"step {done}: held-out loss {record['eval_loss']:.4f}, accuracy {record['eval_accuracy']:.4f}"
            )
        target = args.stop_at_accuracy
        if target is not None and record.get("eval_accuracy", -1.0) >= target:
            session.stopped_at, save_now = done, True
            if session.main:
                progress.write(f"step {done}: held-out accuracy reached --stop_at_accuracy {target:g}; stopping")
        if done % args.logging_steps == 0 or "eval_loss" in record or done == session.end_step:
            log(record)
        if save_now:
            _save(session, done, record)
        if session.stopped_at is not None:
            break
    progress.close()
    return _finish(session)


def _finish(session: Session) -> dict:
    last = session.stopped_at or session.end_step
    summary = {
        "finished": session.stopped_at is not None or session.end_step == session.total_steps,
        "global_step": last,
        "total_steps": session.total_steps,
        "reached_accuracy_at": session.stopped_at,
        "last_checkpoint": str(ckpt.checkpoint_dir(session.output_dir, last)),
        "best_checkpoint": session.best["checkpoint"],
        "best_eval_loss": session.best["eval_loss"],
        "skipped_missing_images": len(session.splits.missing_images),
        "data_settings": session.data_settings(),
        "log_history": session.history,
    }
    if session.main:
        (session.output_dir / "trainer_state.json").write_text(json.dumps(summary, indent=2))
        status = "finished" if summary["finished"] else f"stopped at step {session.end_step} (--stop_at_step)"
        if session.stopped_at is not None:
            status = f"reached --stop_at_accuracy at step {session.stopped_at}"
        print(f"finetune: {status}; last checkpoint {summary['last_checkpoint']}; best {summary['best_checkpoint']}")
    session.accelerator.end_training()
    return summary
