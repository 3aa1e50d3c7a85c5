"""``python scripts/reproduce.py --study adaptvis|clvs|vea``: each paper's headline experiment on its own model.

A study is one data file, ``scripts/studies/<study>.json``: the paper, its released checkpoints (hub ids), the
baseline and the method's model with its paper preset (``models/presets.json``, each setting's source file named
there), the tasks, the model arguments and generation settings, the data it needs, what differs from the paper, and
the published numbers with the table and row each comes from. The runner checks every input before any GPU time,
evaluates every model on every checkpoint (``--dry_run``: prints the paper's settings, its numbers and every
command), writes the published numbers for the checkpoints actually run (``reference.json``) and runs the report
with them beside ours.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from inputs import check_benchmarks, check_hub
from pipeline import Pipeline, format_model_args

STUDIES_DIR = Path(__file__).resolve().parent / "studies"
STUDIES = ("adaptvis", "clvs", "vea")


def load_study(name: str) -> dict:
    return json.loads((STUDIES_DIR / f"{name}.json").read_text(encoding="utf-8"))


def checkpoints(spec: dict, overrides: list[str]) -> dict[str, str]:
    """The study's checkpoints, any replaced with ``--checkpoint NAME=PATH``; an unknown NAME is refused."""
    chosen = dict(spec["checkpoints"])
    for item in overrides:
        name, _, path = item.partition("=")
        if name not in chosen or not path:
            raise SystemExit(f"--checkpoint {item}: expected NAME=PATH with NAME one of {', '.join(chosen)}")
        chosen[name] = path
    return chosen


def model_args(spec: dict, model: str, pretrained: str, out: Path, args: argparse.Namespace) -> dict:
    arguments: dict[str, object] = {"pretrained": pretrained, **spec.get("model_args", {})}
    if args.dtype:
        arguments["dtype"] = args.dtype
    arguments["batch_size"] = args.batch_size
    if args.device:
        arguments["device"] = args.device
    preset = spec["methods"].get(model)
    if preset:
        arguments["preset"] = preset
    if model.endswith("_vea") and args.vea_layers not in ("profiled", "study"):
        arguments["layers"] = args.vea_layers  # a checkpoint whose depth the preset has no layers for
    arguments["attention_log"] = out / "attention" / Path(pretrained).name / model
    return arguments


def resolved_reference(spec: dict, chosen: dict[str, str]) -> dict:
    """The published numbers keyed by the checkpoints this run uses (the report matches ``pretrained`` exactly)."""
    reference = spec["reference"]
    results = [
        {**{k: v for k, v in entry.items() if k != "checkpoint"}, "pretrained": chosen[entry["checkpoint"]]}
        for entry in reference["results"]
    ]
    return {"name": reference["name"], "scale": reference.get("scale", 1), "results": results}


def describe(spec: dict, chosen: dict[str, str], pipeline: Pipeline) -> None:
    """The paper, its settings (with their sources) and its numbers: printed before anything runs."""
    from models.presets import NOT_ARGUMENTS, presets

    pipeline.log(f"study {spec['study']}: {spec['paper']}")
    pipeline.log(f"headline: {spec['headline']}")
    for model, preset in spec["methods"].items():
        method = model.split("_", 1)[1]
        values = presets()[preset][method]
        settings = {k: v for k, v in values.items() if k not in NOT_ARGUMENTS}
        pipeline.log(f"setting: {model} preset={preset} {json.dumps(settings)}")
        pipeline.log(f"  from: {values.get('source', 'not stated')}")
    pipeline.log(
        f"model_args: {json.dumps(spec.get('model_args', {}))}; gen_kwargs: {spec.get('gen_kwargs') or 'the tasks own'}"
    )
    for name, pretrained in chosen.items():
        pipeline.log(f"checkpoint {name}: {pretrained}")
    for note in spec.get("notes", []):
        pipeline.log(f"note: {note}")
    reference = spec["reference"]
    pipeline.log(f"published numbers ({reference['name']}; {reference['source']}):")
    for entry in reference["results"]:
        pipeline.log(
            f"  {entry['task']:<28} {entry['model']:<14} {entry.get('metric', 'accuracy'):<22} {entry['value']:>6} "
            f"({entry['checkpoint']}; {entry['source']})"
        )
    for entry in reference.get("averages", []):
        pipeline.log(
            f"  average over the paper's tasks: {entry['model']:<14} {entry['value']:>6} ({entry['checkpoint']})"
        )
    if reference.get("untraced"):
        pipeline.log(f"  untraced: {reference['untraced']}")


def check_inputs(spec: dict, chosen: dict[str, str], tasks: list[str], args: argparse.Namespace) -> list[str]:
    """Every missing input, one line each with its fix."""
    problems = []
    for variable, what in spec.get("data", {}).items():
        value = os.environ.get(variable, "").strip()
        if not value or not Path(value).expanduser().is_dir():
            state = "is not set" if not value else f"={value} does not exist"
            problems.append(f"{variable} {state}: export {variable}=/path/to/it ({what})")
    for name, pretrained in chosen.items():
        flag = f"--checkpoint {name}"
        problems += [
            p.replace(f"{flag} /path/to/folder", f"{flag}=/path/to/folder") for p in check_hub(pretrained, flag)
        ]
    problems += check_benchmarks(tasks, args.include_path, refuse_vsr=False)
    return problems


def run_study(args: argparse.Namespace) -> int:
    spec = load_study(args.study)
    chosen = checkpoints(spec, args.checkpoint)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else list(spec["tasks"])
    out = args.out.resolve()
    local = all(Path(p).expanduser().exists() for p in chosen.values())
    pipeline = Pipeline(f"reproduce {args.study}", dry_run=args.dry_run, offline=local and args.tasks is not None)
    describe(spec, chosen, pipeline)
    problems = check_inputs(spec, chosen, tasks, args)
    if problems and not args.dry_run:
        print("[reproduce] not started; fix these first:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"[reproduce] warning (a real run would stop here): {problem}", file=sys.stderr)
    if not args.dry_run:
        out.mkdir(parents=True, exist_ok=True)
    runs = []
    for name, pretrained in chosen.items():
        for model in [spec["baseline"], *spec["methods"]]:
            output = out / "runs" / name / model
            pipeline.evaluate(
                f"evaluate {model} on {name}: {', '.join(tasks)}",
                model,
                model_args(spec, model, pretrained, out, args),
                tasks,
                output,
                pipeline.env(),
                batch_size=args.batch_size,
                limit=args.limit,
                resume=True,
                include_path=args.include_path,
                gen_kwargs=spec.get("gen_kwargs"),
            )
            runs.append(output)
    extra = ["--baseline", spec["baseline"], "--examples", "4"]
    if args.include_path:
        extra += ["--include_path", args.include_path]
    reference = resolved_reference(spec, chosen)
    if reference["results"]:
        path = out / "reference.json"
        if not args.dry_run:
            path.write_text(json.dumps(reference, indent=2) + "\n", encoding="utf-8")
        extra += ["--reference", str(path)]
    report = pipeline.report("analysis report", runs, out / "report", pipeline.env(), *extra)
    pipeline.log(f"report: {report}")
    return 0


__all__ = ["STUDIES", "format_model_args", "run_study"]
