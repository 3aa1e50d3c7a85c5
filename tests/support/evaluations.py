"""The evaluations more than one end-to-end file reads, each run once per test run (``built_once``: however many
xdist workers ask, and whichever file asks first).

Each file about an evaluation checks what that file is about (the models' answers and logs, the figures, the
families, the other benchmarks); ``e2e/test_report_numbers.py`` checks on the very same runs that the report's numbers
are their results JSON's. Sharing the runs is what lets that claim live in one place without evaluating anything twice.
Every builder returns paths (JSON, as ``built_once`` keeps them); the fixtures in ``e2e/conftest.py`` read the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.commands import lmms_eval_env, run_cli, run_lmms_eval, run_module
from tests.support.environment import built_once

VSR_TASK = "vsr_random_dev"

# two of the study's models on the tiny checkpoint, with the attention log, and the report as a user starts it
STUDY_PAIR_MODELS = ("qwen3vl", "qwen3vl_adaptvis")
STUDY_PAIR_LIMIT = 8
STUDY_PAIR_EXAMPLES = 3

# the study's four models on the tiny checkpoint with the real Qwen vocabulary (VEA profiling its layers on first use)
USER_PATH_MODELS = ("qwen3vl", "qwen3vl_adaptvis", "qwen3vl_clvs", "qwen3vl_vea", "qwen3vl_pai", "qwen3vl_vaf")
USER_PATH_LIMIT = 4

# the family-detecting models on each other family's tiny checkpoint
OTHER_FAMILIES = ("qwen2_5_vl", "llava", "llava_next", "gemma3")
FAMILY_MODELS = ("vlm_baseline", "vlm_adaptvis", "vlm_clvs", "vlm_vea")
FAMILY_LOGGED = ("vlm_baseline", "vlm_adaptvis", "vlm_vea")
FAMILY_LIMIT = 4

# lmms-eval's installed benchmarks on local data, answered by the colour answerer, with and without AdaptVis
CROSS_DOCS = 24
CROSS_SMOOTHEN = "confidence_threshold=1.0,smoothen_weight=0.05"  # every document smoothened, twenty-fold
CROSS_RUNS = (("base", "qwen3vl", ""), ("smooth", "qwen3vl_adaptvis", CROSS_SMOOTHEN))


def evaluate(root: Path, arguments: dict[str, str], limit: int, vsr_data_dir: Path, label: str = "") -> dict[str, str]:
    """Each model (``{model: its --model_args}``) through lmms-eval on the first ``limit`` documents of the VSR task,
    samples logged: ``{model: output folder}``."""
    runs = {}
    for model, args in arguments.items():
        output = root / f"out_{model}"
        completed = run_lmms_eval(
            ["--model", model, "--model_args", args, "--tasks", VSR_TASK, "--limit", str(limit), "--log_samples",
             "--output_path", str(output)],
            lmms_eval_env(vsr_data_dir),
        )  # fmt: skip
        assert list(output.rglob("*_results.json")), (
            f"{label}{model}: no results\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
        )
        runs[model] = str(output)
    return runs


def reported(root: Path, runs: dict[str, str], vsr_data_dir: Path, *flags: str) -> str:
    """The analysis report over ``runs`` (in-process), in ``root/report``."""
    report = root / "report"
    completed = run_module(
        "analysis", ["report", *runs.values(), "--out", str(report), *flags], lmms_eval_env(vsr_data_dir)
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return str(report)


def study_pair(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path, vsr_data_dir: Path) -> dict:
    """``{"runs": {model: output folder}, "report": folder}``."""

    def build(root: Path) -> dict:
        runs = {}
        for model in STUDY_PAIR_MODELS:
            output, log = root / f"out_{model}", root / f"attn_{model}"
            completed = run_lmms_eval(
                ["--model", model, "--model_args", f"pretrained={checkpoint},attention_log={log}",
                 "--tasks", VSR_TASK, "--limit", str(STUDY_PAIR_LIMIT), "--log_samples", "--output_path", str(output)],
                lmms_eval_env(vsr_data_dir),
            )  # fmt: skip
            assert completed.returncode == 0, completed.stderr[-3000:]
            assert list(log.glob("records.rank*.jsonl")), f"{model} wrote no attention log: {completed.stderr[-2000:]}"
            runs[model] = str(output)
        out = root / "report"
        completed = run_cli(  # the report's command line as a user starts it (other tests run it in-process)
            "analysis",
            ["report", *runs.values(), "--out", str(out), "--examples", str(STUDY_PAIR_EXAMPLES)],
            lmms_eval_env(vsr_data_dir),
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        return {"runs": runs, "report": str(out)}

    return built_once(tmp_path_factory, "e2e-study-pair", build)


def user_path(tmp_path_factory: pytest.TempPathFactory, qwen_checkpoint: Path, vsr_data_dir: Path) -> dict:
    """``{"root": folder, "runs": {model: output folder}, "logs": {model: attention log}, "report": folder}``; VEA's
    profile is cached in ``root/vea_cache``."""

    def build(root: Path) -> dict:
        from vsr_tasks.synthetic import generate

        boxes = root / "synthetic"  # VSR-layout rows with COCO boxes: what VEA profiles its layers on
        generate(boxes, 8, 2, 0, seed=4, image_size=96)
        logs = {model: root / f"attn_{model}" for model in USER_PATH_MODELS}
        arguments = {}
        for model in USER_PATH_MODELS:
            args = f"pretrained={qwen_checkpoint},attention_log={logs[model]},batch_size=2"
            if model == "qwen3vl_vea":  # layers profiled on first use, on the synthetic train rows and their boxes
                args += f",coco_annotations_dir={boxes / 'annotations'},vsr_data_dir={boxes},profile_samples=4"
                args += f",profile_cache={root / 'vea_cache'}"
            if model == "qwen3vl_vaf":  # the authors' layers 9-14 are beyond the tiny model's 4
                args += ",start_layer=1,end_layer=4"
            arguments[model] = args
        runs = evaluate(root, arguments, USER_PATH_LIMIT, vsr_data_dir)
        report = reported(root, runs, vsr_data_dir)
        return {"root": str(root), "runs": runs, "logs": {m: str(log) for m, log in logs.items()}, "report": report}

    return built_once(tmp_path_factory, "e2e-user-path", build)


def family_runs(
    tmp_path_factory: pytest.TempPathFactory, family: str, checkpoint: Callable[[], Path], vsr_data_dir: Path
) -> dict:
    """``{"runs": {model: output folder}, "logs": {model: attention log}, "report": folder}`` of one family
    (``checkpoint()`` builds its tiny checkpoint, only when the runs are not built yet)."""

    def build(root: Path) -> dict:
        checkpoint_folder = checkpoint()
        logs = {model: root / f"attn_{model}" for model in FAMILY_MODELS}
        arguments = {}
        for model in FAMILY_MODELS:
            args = f"pretrained={checkpoint_folder},batch_size=2"
            args += f",attention_log={logs[model]}" if model in FAMILY_LOGGED else ""
            args += ",layers=[1,3]" if model == "vlm_vea" else ""
            arguments[model] = args
        runs = evaluate(root, arguments, FAMILY_LIMIT, vsr_data_dir, label=f"{family} ")
        report = reported(root, runs, vsr_data_dir, "--baseline", "vlm_baseline")
        return {"runs": runs, "logs": {m: str(log) for m, log in logs.items()}, "report": report}

    return built_once(tmp_path_factory, f"e2e-family-{family}", build)


def answerer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Qwen3-VL taught to answer the colour tasks (``tests.support.local_benchmarks.train_answerer``)."""
    from tests.support.local_benchmarks import train_answerer

    return Path(built_once(tmp_path_factory, "answerer", lambda root: str(train_answerer(root))))


def cross_benchmark_runs(tmp_path_factory: pytest.TempPathFactory, answerer_checkpoint: Path) -> dict:
    """``{"tasks": the task folder, "names": {benchmark: local task}, "runs": {name: output folder}}``: each of
    :data:`CROSS_RUNS` on every colour task (``--include_path`` the task folder)."""

    def build(root: Path) -> dict:
        from tests.support.local_benchmarks import write_colour_tasks

        tasks = root / "tasks"
        tasks.mkdir()
        names = write_colour_tasks(tasks, CROSS_DOCS, seed=5, borderline=True)
        runs = {}
        for name, model, extra in CROSS_RUNS:
            output = root / "runs" / name
            model_args = f"pretrained={answerer_checkpoint},device=cpu,batch_size=8" + (f",{extra}" if extra else "")
            command = ["--model", model, "--model_args", model_args, "--tasks", ",".join(names.values())]
            completed = run_lmms_eval(
                [*command, "--include_path", str(tasks), "--log_samples", "--output_path", str(output)],
                lmms_eval_env(),
            )
            assert list(output.rglob("*_results.json")), completed.stderr[-3000:]
            runs[name] = str(output)
        return {"tasks": str(tasks), "names": names, "runs": runs}

    return built_once(tmp_path_factory, "e2e-cross-benchmark", build)
