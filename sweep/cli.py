"""``python -m sweep``: tune one method's hyperparameters on held-out train rows.

    python -m sweep --model qwen3vl_adaptvis --model_args pretrained=PATH,batch_size=8 \\
        --task vsr_random_heldout --grid confidence_threshold=0.6,0.7,0.8,0.9 \\
        --grid sharpen_weight=1.0,1.2,1.5 --grid smoothen_weight=0.1,0.2,0.5 --out sweeps/adaptvis-random

Outputs in ``--out``: ``sweep.json`` (per setting: model_args, metric, n, bootstrap 95% interval, paired
difference to the neutral setting with its interval and exact McNemar p), ``answers.jsonl`` (doc_id, setting,
answer after the task's filters, score), ``sweep.md`` (sorted by the metric), ``heatmap.png`` and
``best_model_args.txt`` (one line to paste after ``--model_args``). Rerun with the same ``--out`` to continue an
interrupted sweep; a changed model, task or grid is refused by name. Under ``accelerate launch`` each process
answers a share of the batches and rank 0 writes the outputs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lmms_eval import utils as lmms_utils
from loguru import logger

from models.arguments import parse_batch_size
from models.engine import ROWS_PER_PASS
from sweep.engine import answer_all, read_raw_answers
from sweep.points import PointsError, check, parse_points, point, settings, swept_method
from sweep.results import summarise, write_outputs
from sweep.tasks import TaskError, load_task

STATE_FILE = "sweep_state.json"
REFUSED_ARGUMENTS = {
    "attention_log": "it records one setting",
    "answer_cache": "the sweep keeps its own answers in --out",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sweep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    from models.methods import METHODS
    from models.names import is_baseline, model_names

    swept = [name for name in model_names(METHODS) if not is_baseline(name)]
    parser.add_argument("--model", required=True, help=f"a method's model: {', '.join(swept)}")
    parser.add_argument("--model_args", default="", help="fixed model arguments, as for lmms-eval (pretrained=...)")
    parser.add_argument("--task", required=True, help="one lmms-eval generate_until task (vsr_random_heldout, ...)")
    parser.add_argument(
        "--grid", action="append", default=[], metavar="NAME=V1,V2", help="a parameter and its values; repeatable"
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (rerun with it to continue)")
    parser.add_argument("--limit", type=int, default=None, help="the first N documents, as lmms-eval's --limit")
    parser.add_argument("--metric", default=None, help="the task metric to rank by (default: its first metric)")
    parser.add_argument(
        "--allow_eval_split", action="store_true", help="allow a dev/test split (every output then says so)"
    )
    parser.add_argument("--include_path", default=None, help="an extra folder of task YAMLs, as for lmms-eval")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")
    parser.add_argument(
        "--grid_rows",
        type=int,
        default=ROWS_PER_PASS,
        help="AdaptVis/CLVS: sequences x settings per batched pass (default %(default)s)",
    )
    parser.add_argument(
        "--max_batches", type=int, default=None, help="answer at most N more batches, then stop; rerun to continue"
    )
    return parser.parse_args(argv)


def _fixed_arguments(text: str) -> dict:
    fixed = lmms_utils.simple_parse_args_string(text) if text else {}
    refused = [name for name in REFUSED_ARGUMENTS if name in fixed]
    if refused:
        why = "; ".join(f"{name}: {REFUSED_ARGUMENTS[name]}" for name in refused)
        raise PointsError(f"--model_args {', '.join(refused)}: not supported in a sweep ({why})")
    return fixed


def _setting_model_args(fixed_text: str, setting: dict) -> str:
    def value(item) -> str:
        if isinstance(item, bool):
            return str(item).lower()
        return f"{item:g}" if isinstance(item, float) else str(item)

    parts = [fixed_text] if fixed_text else []
    parts += [f"{name}={value(item)}" for name, item in setting.items()]
    return ",".join(parts)


def _check_state(out: Path, state: dict) -> None:
    """Refuse to continue a sweep whose model, task or grid changed, naming what changed."""
    path = out / STATE_FILE
    if not path.is_file():
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        return
    previous = json.loads(path.read_text(encoding="utf-8"))
    changed = [key for key in state if previous.get(key) != state[key]]
    if changed:
        details = "; ".join(f"{key}: was {previous.get(key)!r}, now {state[key]!r}" for key in changed)
        raise PointsError(f"{out} holds a different sweep ({details}); use another --out, or delete it to start over")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        method = swept_method(args.model)
        fixed = _fixed_arguments(args.model_args)
        grid = parse_points(args.grid, args.model, fixed)
        all_settings = settings(grid)
        check(args.model, method.params(), all_settings)  # out-of-range values, before any model is loaded
        task = load_task(args.task, args.limit, args.metric, args.include_path)
        if not task.is_train_slice and not args.allow_eval_split:
            raise TaskError(
                f"{args.task} evaluates on its {task.split!r} split: tune on rows fine-tuning held out instead "
                "(vsr_random_heldout, vsr_zeroshot_heldout), then evaluate the best setting once on dev and test; "
                "--allow_eval_split overrides this"
            )
        state = {"model": args.model, "model_args": args.model_args, "task": args.task, "grid": grid}
        state.update(limit=args.limit)
        _check_state(args.out, state)
    except (PointsError, TaskError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    from plugin.loading import accelerate_process, engine_for
    from plugin.requests import RequestBatches

    engine_arguments = dict(fixed)
    batch_size = parse_batch_size(engine_arguments.pop("batch_size", 1))
    engine_arguments.pop("max_batch_size", None)  # lmms-eval's, without effect here as there
    process, accelerator = accelerate_process()
    try:
        engine = engine_for(args.model, process=process, rows_per_pass=args.grid_rows, **engine_arguments)
    except ValueError as error:  # an unknown argument or a value that cannot work, refused before loading
        print(f"error: {error}", file=sys.stderr)
        return 2
    batches = RequestBatches(engine, {task.name: task.task.dataset}, batch_size)
    base = engine.method.params
    neutral = dict(method.neutral)
    try:
        check(args.model, base, all_settings + [neutral])
    except PointsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    points = [point(base, setting) for setting in all_settings]
    neutral_index = next((i for i, p in enumerate(points) if p.neutral), None)
    if neutral_index is None:
        all_settings.append(dict(neutral))
        points.append(point(base, neutral))
        neutral_index = len(points) - 1
    logger.info(
        f"sweep: {args.model} on {task.name} ({len(task.requests)} documents), {len(points)} settings "
        f"(the neutral one: {all_settings[neutral_index]})"
    )
    finished = answer_all(engine, batches, task.requests, points, args.out, process, args.max_batches)
    accelerator.wait_for_everyone()
    if process.rank != 0:
        return 0
    if not finished:
        print(f"sweep: stopped after --max_batches {args.max_batches}; rerun the same command to continue")
        return 0
    raw = read_raw_answers(args.out)
    missing = [(s, d) for s in range(len(points)) for d in task.doc_ids if (s, d) not in raw]
    if missing:
        print(f"sweep: {len(missing)} answers are missing (another process stopped?); rerun to complete")
        return 1
    scored = [task.score({d: raw[(s, d)] for d in task.doc_ids}) for s in range(len(points))]
    model_args = [_setting_model_args(args.model_args, setting) for setting in all_settings]
    results = summarise(task, all_settings, neutral_index, model_args, scored, args.bootstrap, args.seed)
    header = {"model": args.model, "task": task.name, "split": task.split, "fixed_model_args": args.model_args}
    header["grid"] = grid
    summary = write_outputs(args.out, header, task, results, scored, grid, args.model_args)
    best = summary["best"]
    print(f"sweep: best {task.metric} {best['metric']:.4f} with --model_args {best['model_args']}")
    print(f"sweep: {args.out / 'sweep.md'}")
    return 0
