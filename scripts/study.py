"""The one study runner: a study file (``scripts/studies/<name>.json``) in, every step of its experiment run.

A study is data: its checkpoints (one "arm" each), the baseline and the methods with their presets, the tasks, the
model arguments and generation settings, the data it needs, the optional steps (fine-tuning each arm's checkpoint,
profiling VEA's layers on each arm's train rows), what differs from the paper, and the published numbers with the
table and row each comes from. ``{checkpoint}`` in a preset or a task name stands for the arm's name (the seed study's
``seed_{checkpoint}`` preset is ``seed_random`` on its random arm). The steps, each one of the project's command lines
(``scripts/pipeline.py``): describe the study, check every input (``scripts/inputs.py``) before any GPU time, fine-tune
and profile where the study has those steps, evaluate every model on every arm (``--benchmarks``: also on other
tasks, with the same model arguments), write the published numbers for the checkpoints actually run
(``reference.json``) and run the report with them beside ours.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from inputs import (
    check_benchmarks,
    check_coco,
    check_data_variables,
    check_hub,
    check_nltk_data,
    check_vsr_data,
    env_path,
)
from pipeline import Pipeline, task_metric

from vsr_tasks.data import DATA_DIR_VARIABLE

STUDIES_DIR = Path(__file__).resolve().parent / "studies"
ARM = "{checkpoint}"


def study_names() -> tuple[str, ...]:
    """Every study file's name, the seed study first."""
    names = sorted(path.stem for path in STUDIES_DIR.glob("*.json"))
    return tuple(sorted(names, key=lambda name: name != "seed"))


@dataclass
class Study:
    """One study file, read."""

    spec: dict

    @classmethod
    def load(cls, name: str) -> Study:
        return cls(json.loads((STUDIES_DIR / f"{name}.json").read_text(encoding="utf-8")))

    @property
    def name(self) -> str:
        return self.spec["study"]

    @property
    def baseline(self) -> str:
        return self.spec["baseline"]

    def models(self) -> list[str]:
        """The runs on each checkpoint: the baseline, each method's model, then each variant (``model+preset``: a
        method's model under another preset, AdaptVis' ScalingVis)."""
        variants = [
            f"{model}+{preset}" for model, presets in self.spec.get("variants", {}).items() for preset in presets
        ]
        return [self.baseline, *self.spec["methods"], *variants]

    @staticmethod
    def model_of(run: str) -> str:
        """The ``--model`` of a run (a variant's ``model+preset`` is its model)."""
        return run.split("+", 1)[0]

    def preset(self, run: str, arm: str) -> str | None:
        preset = run.split("+", 1)[1] if "+" in run else self.spec["methods"].get(run)
        return preset.replace(ARM, arm) if preset else None

    def tasks(self, arm: str, test: bool = False) -> list[str]:
        tasks = list(self.spec["tasks"]) + (list(self.spec.get("test_tasks", [])) if test else [])
        return [task.replace(ARM, arm) for task in tasks]

    def model_args(self, arm: str) -> dict:
        """The study's model arguments on one checkpoint: its own, then the checkpoint's (dtype, pixels, prompt)."""
        return {**self.spec.get("model_args", {}), **self.spec.get("checkpoint_model_args", {}).get(arm, {})}

    @staticmethod
    def entry_run(entry: dict) -> str:
        """The run a published number belongs to: its model, or a variant when it names a preset."""
        return f"{entry['model']}+{entry['preset']}" if entry.get("preset") else entry["model"]

    def vea_model(self) -> str | None:
        from models.methods import method_of_model

        return next((model for model in self.spec["methods"] if method_of_model(model).name == "vea"), None)

    def missing_optional_data(self) -> dict[str, str]:
        """The optional inputs a run goes without (``optional_data``: variable -> what the run does without it)."""
        optional = self.spec.get("optional_data", {})
        missing = {}
        for name, without in optional.items():
            path = env_path(name)
            if path is None or not path.is_dir():
                missing[name] = without
        return missing

    def reference(self, pretrained: dict[str, str], caveats: list[str] | None = None) -> dict:
        """The published numbers keyed by the checkpoints this run uses (the report matches ``pretrained``); a
        ``caveat`` (an optional input the run went without) is named in the reference column's title."""
        reference = self.spec["reference"]
        results = [
            {
                **{k: v for k, v in entry.items() if k != "checkpoint"},
                "pretrained": pretrained[entry["checkpoint"]],
                "preset": self.preset(self.entry_run(entry), entry["checkpoint"]),  # the run it belongs to
            }
            for entry in reference["results"]
            if entry["checkpoint"] in pretrained
        ]
        name = reference["name"] + "".join(f"; ours {caveat}" for caveat in caveats or [])
        return {"name": name, "scale": reference.get("scale", 1), "results": results}


def settings(study: Study) -> list[tuple[str, object]]:
    """Every setting of a study file as (path, value): what its provenance table lists, each with a source."""
    spec = study.spec
    rows: list[tuple[str, object]] = [(f"checkpoints.{arm}", path) for arm, path in spec["checkpoints"].items()]
    rows.append(("baseline", spec["baseline"]))
    rows += [(f"methods.{model}", f"preset={preset}") for model, preset in spec["methods"].items()]
    rows += [
        (f"variants.{model}", [f"preset={p}" for p in presets]) for model, presets in spec.get("variants", {}).items()
    ]
    rows += [(key, spec[key]) for key in ("tasks", "test_tasks") if key in spec]
    rows += [(f"model_args.{key}", value) for key, value in spec.get("model_args", {}).items()]
    rows += [
        (f"checkpoint_model_args.{arm}.{key}", value)
        for arm, arguments in spec.get("checkpoint_model_args", {}).items()
        for key, value in arguments.items()
    ]
    rows.append(("gen_kwargs", spec.get("gen_kwargs") or "the tasks' own"))
    rows += [(key, spec[key]) for key in ("vsr_data", "finetune", "profile_vea") if key in spec]
    return rows


def preset_settings(study: Study) -> list[tuple[str, object, str]]:
    """Every value of the presets the study's models run, as (path, value, source): a preset's own settings with its
    ``source``, and each task's line of a per-task preset with the file and line it comes from."""
    from models.methods import METHODS
    from models.names import scheme_of
    from models.presets import NOT_ARGUMENTS, presets

    used = [(model, preset) for model, preset in study.spec["methods"].items()]
    used += [(model, preset) for model, names in study.spec.get("variants", {}).items() for preset in names]
    rows: list[tuple[str, object, str]] = []
    for model, preset in used:
        if "{" in preset:  # a preset per checkpoint (seed_{checkpoint}): its rows are the seed presets' own table
            continue
        _, method = scheme_of(model, METHODS)
        values = presets()[preset][method]
        own = {key: value for key, value in values.items() if key not in (*NOT_ARGUMENTS, "by_task")}
        rows.append((f"presets.{preset}", own, values.get("source", "MISSING")))
        for task, task_values in values.get("by_task", {}).items():
            shown = {key: value for key, value in task_values.items() if key not in NOT_ARGUMENTS}
            rows.append((f"presets.{preset}.by_task.{task}", shown, task_values.get("source", "MISSING")))
    return rows


def provenance_table(study: Study) -> str:
    """docs/REPRODUCE.md's tables of a study: every setting with its value and source, the values of the presets it
    runs with theirs, then every published number with its table and row (``tests/unit/scripts/test_studies.py``
    keeps the page equal to this)."""
    sources = study.spec.get("sources", {})

    def cell(value: object) -> str:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return "`" + text.replace("|", "\\|") + "`"

    lines = ["| setting | value | source |", "|---|---|---|"]
    lines += [f"| `{path}` | {cell(value)} | {sources.get(path, 'MISSING')} |" for path, value in settings(study)]
    lines += [f"| `{path}` | {cell(value)} | {source} |" for path, value, source in preset_settings(study)]
    results = study.spec["reference"]["results"]
    if results:
        lines += ["", "| task | checkpoint | model | metric | published | source |", "|---|---|---|---|---|---|"]
        lines += [
            f"| `{e['task']}` | {e['checkpoint']} | `{e['model']}` | {e.get('metric', 'accuracy')} | {e['value']} | "
            f"{e['source']} |"
            for e in results
        ]
    return "\n".join(lines)


@dataclass
class Plan:
    """What to run, resolved from the study and the arguments."""

    out: Path
    arms: dict[str, str]  # arm -> checkpoint (a fine-tuned one resolved after training)
    models: list[str]
    tasks: list[str] | None  # --tasks: instead of the study's own
    benchmarks: list[str]
    dtype: str | None  # --dtype: over the study's own (its model_args, per checkpoint)
    vsr_data_dir: Path | None
    coco_annotations_dir: Path | None
    profile: bool  # VEA's layers profiled per arm


def make_plan(study: Study, args: argparse.Namespace) -> Plan:
    from profiling import COCO_ANNOTATIONS_VARIABLE

    arms = dict(study.spec["checkpoints"])
    for item in args.checkpoint:
        name, _, path = item.partition("=")
        if name not in arms or not path:
            raise SystemExit(f"--checkpoint {item}: expected NAME=PATH with NAME one of {', '.join(arms)}")
        arms[name] = path
    for name, path in (("random", args.random_checkpoint), ("zeroshot", args.zeroshot_checkpoint)):
        if path and name not in arms:
            raise SystemExit(f"--{name}_checkpoint: the {study.name} study has no {name} checkpoint")
        if path:
            arms[name] = path
    if args.splits is not None:
        chosen = [s.strip() for s in args.splits.split(",") if s.strip()]
        if not chosen or any(s not in arms for s in chosen):
            raise SystemExit(f"--splits: choose from {', '.join(arms)}, got {args.splits!r}")
        arms = {name: arms[name] for name in chosen}
    models = study.models()
    if args.methods is not None:
        chosen = [m.strip() for m in args.methods.split(",") if m.strip()]
        names = list(dict.fromkeys(study.model_of(run) for run in models))
        if not chosen or any(m not in names for m in chosen):
            raise SystemExit(f"--methods: choose from {', '.join(names)}, got {args.methods!r}")
        models = [study.baseline] + [r for r in models if study.model_of(r) in chosen and r != study.baseline]
    if args.finetune:
        if "finetune" not in study.spec:
            raise SystemExit(f"--finetune: the {study.name} study fine-tunes nothing")
        if args.random_checkpoint or args.zeroshot_checkpoint or args.checkpoint:
            raise SystemExit("--finetune trains every checkpoint; do not also name checkpoints")
    profiles = "profile_vea" in study.spec and study.vea_model() in models
    if args.vea_layers not in ("profiled", "study") and not args.vea_layers.startswith("["):
        raise SystemExit(f"--vea_layers: profiled, study or [L,...], got {args.vea_layers!r}")
    return Plan(
        out=args.out.resolve(),
        arms=arms,
        models=models,
        tasks=[t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None,
        benchmarks=[t.strip() for t in args.benchmarks.split(",") if t.strip()],
        dtype=args.dtype,
        vsr_data_dir=args.vsr_data_dir or env_path(DATA_DIR_VARIABLE),
        coco_annotations_dir=args.coco_annotations_dir or env_path(COCO_ANNOTATIONS_VARIABLE),
        profile=profiles and args.vea_layers == "profiled",
    )


def group_members(task: str) -> list[str]:
    """The tasks a group of lmms-eval's index names (empty for a task, or a name the index does not have)."""
    import yaml

    from local_tasks.manager import task_manager

    entry = task_manager().task_index.get(task, {})
    if entry.get("type") != "group":
        return []
    with open(entry["yaml_path"], encoding="utf-8") as handle:
        return [str(member) for member in yaml.safe_load(handle).get("task", [])]


def describe(study: Study, plan: Plan, pipeline: Pipeline) -> None:
    """The paper, its settings (with their sources) and its numbers: printed before anything runs."""
    from models.methods import method_of_model
    from models.presets import NOT_ARGUMENTS, presets

    spec = study.spec
    pipeline.log(f"study {study.name}: {spec['paper']}")
    pipeline.log(f"headline: {spec['headline']}")
    for run in study.models()[1:]:
        model = study.model_of(run)
        method = method_of_model(model).name
        for arm in plan.arms:
            preset = study.preset(run, arm)
            values = presets()[preset][method]
            settings = {k: v for k, v in values.items() if k not in NOT_ARGUMENTS}
            pipeline.log(f"setting: {model} preset={preset} {json.dumps(settings)}")
            pipeline.log(f"  from: {values.get('source', 'not stated')}")
            if ARM not in (study.preset(run, ARM) or ""):
                break  # one preset for every arm
    for task in study.tasks(next(iter(plan.arms))):
        members = group_members(task)
        pipeline.log(f"task {task}" + (f": the group of {', '.join(members)}" if members else ""))
    pipeline.log(
        f"model_args: {json.dumps(spec.get('model_args', {}))}; gen_kwargs: {spec.get('gen_kwargs') or 'the tasks own'}"
    )
    for arm, arguments in spec.get("checkpoint_model_args", {}).items():
        pipeline.log(f"model_args on {arm}: {json.dumps(arguments)}")
    for name, pretrained in plan.arms.items():
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


def check_inputs(study: Study, plan: Plan, args: argparse.Namespace) -> list[str]:
    """Every missing input, one line each with its fix (empty: ready to run)."""
    spec = study.spec
    problems: list[str] = []
    vsr = spec.get("vsr_data")
    if vsr is not None:
        splits = list(vsr["splits"]) + (list(vsr.get("test_splits", [])) if args.test else [])
        problems += check_vsr_data(plan.vsr_data_dir, list(plan.arms), splits, args.limit)
    problems += check_data_variables(
        {k: v for k, v in spec.get("data", {}).items() if vsr is None or k != DATA_DIR_VARIABLE}
    )
    if plan.profile:
        problems += check_coco(plan.coco_annotations_dir)
    problems += check_benchmarks(plan.benchmarks, args.include_path)
    own: list[str] = []
    if plan.tasks is not None:
        problems += check_benchmarks(plan.tasks, args.include_path, refuse_vsr=False, flag="--tasks")
    elif vsr is None:  # the study's own tasks (VSR's are this plugin's and checked above with their data)
        own = sorted({task for arm in plan.arms for task in study.tasks(arm, args.test)})
        problems += check_benchmarks(own, args.include_path, refuse_vsr=False, flag="task")
    problems += check_nltk_data(list(plan.benchmarks or []) + list(plan.tasks or own))
    if args.finetune:
        problems += check_hub(args.base_model or spec["finetune"]["base_model"], "--base_model")
    else:
        for name, pretrained in plan.arms.items():
            problems += check_hub(pretrained, *checkpoint_flag(study, name))
    return problems


def checkpoint_flag(study: Study, name: str) -> tuple[str, str]:
    """How a user replaces one arm's checkpoint, as (flag, separator): the seed study's splits keep their flags."""
    return (f"--{name}_checkpoint", " ") if study.name == "seed" else (f"--checkpoint {name}", "=")


# ------------------------------------------------------------------ steps
def finetune(study: Study, plan: Plan, pipeline: Pipeline, args: argparse.Namespace, arm: str) -> str:
    """Train one arm's checkpoint with the study's recipe; returns the best checkpoint."""
    recipe = study.spec["finetune"]
    output = plan.out / "finetune" / arm
    state = output / "trainer_state.json"
    if not args.dry_run and state.is_file() and json.loads(state.read_text()).get("finished"):
        pipeline.log(f"fine-tune {arm}: finished run in {output}, skipped")
    else:
        resume = ["--resume_from_checkpoint", "latest"] if state.is_file() else []
        pipeline.run(
            f"fine-tune {arm}",
            ["-m", "finetune", "--dataset_type", recipe["dataset_type"].replace(ARM, arm),
             "--vsr_data_dir", str(plan.vsr_data_dir or f"${DATA_DIR_VARIABLE}"),
             "--model_id", args.base_model or recipe["base_model"], *recipe.get("arguments", []),
             "--output_dir", str(output), *resume],
            pipeline.env(),
        )  # fmt: skip
    if args.dry_run:
        return str(output / "<best checkpoint>")
    return json.loads(state.read_text())["best_checkpoint"]


def profile(study: Study, plan: Plan, pipeline: Pipeline, args: argparse.Namespace, arm: str, checkpoint: str) -> Path:
    """VEA's layers profiled on the arm's own train rows."""
    from profiling import COCO_ANNOTATIONS_VARIABLE

    out = plan.out / f"vea_layers_{arm}.json"
    if not args.dry_run and out.is_file():
        pipeline.log(f"VEA profile {arm}: {out} exists, skipped")
        return out
    data = plan.vsr_data_dir or f"${DATA_DIR_VARIABLE}"
    coco = plan.coco_annotations_dir or f"${COCO_ANNOTATIONS_VARIABLE}"
    dataset_type = study.spec["profile_vea"]["dataset_type"].replace(ARM, arm)
    command = ["-m", "profiling", "--model", checkpoint, "--vsr_data_dir", str(data),
               "--dataset_type", dataset_type, "--coco_annotations_dir", str(coco),
               "--samples", str(args.profile_samples), "--out", str(out)]  # fmt: skip
    dtype = plan.dtype or study.model_args(arm).get("dtype")
    if dtype:
        command += ["--dtype", dtype]
    if args.device:
        command += ["--device", args.device]
    pipeline.run(f"VEA profile {arm}", command, pipeline.env())
    return out


def model_args(
    study: Study, plan: Plan, args: argparse.Namespace, run: str, arm: str, checkpoint: str, layers: Path | None
) -> dict:
    """``run``'s model arguments on ``arm`` (a run is a model, or a variant ``model+preset``)."""
    arguments: dict[str, object] = {"pretrained": checkpoint, **study.model_args(arm)}
    if plan.dtype:
        arguments["dtype"] = plan.dtype
    arguments["batch_size"] = args.batch_size
    if args.device:
        arguments["device"] = args.device
    preset = study.preset(run, arm)
    if preset:
        arguments["preset"] = preset
    if study.model_of(run) == study.vea_model():
        if layers is not None:
            arguments["layers_file"] = layers  # explicit: wins over the preset's layers
        elif args.vea_layers.startswith("["):
            arguments["layers"] = args.vea_layers  # a checkpoint whose depth the preset has no layers for
    arguments["attention_log"] = plan.out / "attention" / arm / run
    return arguments


def compare_with_published(study: Study, results_files: dict[tuple[str, str], Path], pipeline: Pipeline) -> None:
    """Each published number beside ours, in the paper's unit (the report has the intervals and tests)."""
    reference = study.spec["reference"]
    scale = reference.get("scale", 1)
    lines = []
    for entry in reference["results"]:
        results = results_files.get((entry["checkpoint"], study.entry_run(entry)))
        ours = task_metric(results, entry["task"], entry.get("metric", "accuracy")) if results else None
        if ours is not None:
            lines.append(
                f"  {entry['checkpoint']:<14} {study.entry_run(entry):<18} {entry['task']:<28} "
                f"{entry.get('metric', 'accuracy'):<22} {ours * scale:.4g}   {entry['value']}"
            )
    if lines:
        pipeline.log(f"ours vs {reference['name']}:")
        for line in lines:
            pipeline.log(line)


def run(study: Study, args: argparse.Namespace) -> int:
    plan = make_plan(study, args)
    local = not args.finetune and all(Path(c).expanduser().exists() for c in plan.arms.values())
    hub_tasks = bool(plan.benchmarks) or (study.spec.get("hub_datasets", False) and plan.tasks is None)
    pipeline = Pipeline(f"reproduce {study.name}", dry_run=args.dry_run, offline=local and not hub_tasks)
    describe(study, plan, pipeline)
    problems = check_inputs(study, plan, args)
    if problems and not args.dry_run:
        print("[reproduce] not started; fix these first:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"[reproduce] warning (a real run would stop here): {problem}", file=sys.stderr)
    caveats = []
    for variable, without in study.missing_optional_data().items():
        print(f"[reproduce] warning: {variable} is not set, so ours {without}", file=sys.stderr)
        caveats.append(f"{without} ({variable} unset)")
    if not args.dry_run:
        plan.out.mkdir(parents=True, exist_ok=True)
    env = pipeline.env(**({DATA_DIR_VARIABLE: str(plan.vsr_data_dir)} if plan.vsr_data_dir else {}))
    runs: list[Path] = []
    results_files: dict[tuple[str, str], Path] = {}  # (arm, run) -> the results JSON of the study's tasks
    pretrained: dict[str, str] = {}
    for arm, checkpoint in plan.arms.items():
        checkpoint = finetune(study, plan, pipeline, args, arm) if args.finetune else checkpoint
        pretrained[arm] = str(checkpoint)
        layers = profile(study, plan, pipeline, args, arm, checkpoint) if plan.profile else None
        tasks = plan.tasks or study.tasks(arm, args.test)
        for run_name in plan.models:
            model = study.model_of(run_name)
            arguments = model_args(study, plan, args, run_name, arm, checkpoint, layers)
            evaluations = [("runs", tasks, None)] + ([("benchmarks", plan.benchmarks, None)] if plan.benchmarks else [])
            for folder, names, _ in evaluations:
                output = plan.out / folder / arm / run_name
                results = pipeline.evaluate(
                    f"evaluate {run_name} on {arm}: {', '.join(names)}",
                    model,
                    arguments,  # the same model_args everywhere: the report merges them into one run
                    names,
                    output,
                    env,
                    batch_size=args.batch_size,
                    limit=args.limit,
                    resume=True,
                    include_path=args.include_path,
                    gen_kwargs=study.spec.get("gen_kwargs"),
                )
                runs.append(output)
                if results is not None and folder == "runs":
                    results_files[(arm, run_name)] = results
    extra = ["--baseline", study.baseline, "--examples", "4"]
    if args.include_path:
        extra += ["--include_path", args.include_path]
    reference = study.reference(pretrained, caveats)
    if reference["results"]:
        path = plan.out / "reference.json"
        if not args.dry_run:
            path.write_text(json.dumps(reference, indent=2) + "\n", encoding="utf-8")
        extra += ["--reference", str(path)]
    report = pipeline.report("analysis report", runs, plan.out / "report", env, *extra)
    compare_with_published(study, results_files, pipeline)
    pipeline.log(f"report: {report} (every task's paired intervals and tests against {study.baseline}, Holm-corrected)")
    return 0
