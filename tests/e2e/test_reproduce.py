"""``scripts/reproduce.py``: the commands it would run, the whole pipeline offline on tiny checkpoints, input checks."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lmms_eval.utils import simple_parse_args_string

from tests.support.commands import lmms_eval_env
from tests.support.environment import REPO_ROOT
from tests.support.inprocess import run_script_in_process
from tests.support.local_benchmarks import write_colour_tasks
from vsr_tasks.synthetic import generate

pytestmark = pytest.mark.slow
SCRIPT = REPO_ROOT / "scripts" / "reproduce.py"
INTERVENTIONS = ("qwen3vl_adaptvis", "qwen3vl_vea", "qwen3vl_clvs")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    """A synthetic VSR folder with both split layouts and COCO boxes, and one tiny checkpoint per split."""
    from testbed.tiny import build_tiny_checkpoint

    root = tmp_path_factory.mktemp("reproduce")
    data = root / "data"
    generate(data, 16, 6, 4, seed=3, image_size=64)
    shutil.copytree(data / "splits" / "random", data / "splits" / "zeroshot")
    tasks = root / "tasks"  # lmms-eval's POPE (and the other colour tasks) on local data, for --benchmarks
    tasks.mkdir()
    write_colour_tasks(tasks, 4, seed=0, borderline=False)
    return {
        "data": data,
        "random": build_tiny_checkpoint(root / "tiny_random", seed=0),
        "zeroshot": build_tiny_checkpoint(root / "tiny_zeroshot", seed=1),
        "root": root,
        "tasks": tasks,
    }


def reproduce(
    setup: dict, out: Path, *extra: str, env_extra: dict | None = None, in_process: bool = False
) -> subprocess.CompletedProcess:
    """``scripts/reproduce.py`` as a subprocess, or (``in_process``) here with its steps here too."""
    args = [
        "--out",
        str(out),
        "--random_checkpoint",
        str(setup["random"]),
        "--zeroshot_checkpoint",
        str(setup["zeroshot"]),
    ]
    args += ["--vsr_data_dir", str(setup["data"]), "--coco_annotations_dir", str(setup["data"] / "annotations")]
    env = lmms_eval_env(**(env_extra or {}))
    if in_process:
        return run_script_in_process(SCRIPT, [*args, *extra], env, REPO_ROOT)
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args, *extra],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def lmms_eval_commands(stdout: str) -> list[dict]:
    """Each printed ``python -m lmms_eval`` command as {model, model_args (dict), tasks, flags}."""
    commands = []
    for line in stdout.splitlines():
        if "-m lmms_eval " not in line:  # the log lines quote papers; only the commands are shell words
            continue
        words = shlex.split(line)
        if "lmms_eval" not in words:
            continue
        flags = {words[i]: words[i + 1] for i in range(len(words) - 1) if words[i].startswith("--")}
        model_args = {key: str(value) for key, value in simple_parse_args_string(flags["--model_args"]).items()}
        commands.append(
            {"model": flags["--model"], "model_args": model_args, "tasks": flags["--tasks"], "flags": flags}
        )
    return commands


def test_dry_run_prints_every_command_with_presets_tasks_and_dtype(setup, tmp_path):
    completed = reproduce(setup, tmp_path / "out", "--dry_run", "--test", "--batch_size", "4")
    assert completed.returncode == 0, completed.stderr[-2000:]
    commands = lmms_eval_commands(completed.stdout)
    assert len(commands) == 8
    for split in ("random", "zeroshot"):
        mine = [c for c in commands if c["model_args"]["pretrained"] == str(setup[split])]
        assert sorted(c["model"] for c in mine) == sorted(("qwen3vl", *INTERVENTIONS))
        for command in mine:
            assert command["tasks"] == f"vsr_{split}_dev,vsr_{split}_test"
            assert command["model_args"]["dtype"] == "float32" and command["model_args"]["batch_size"] == "4"
            assert command["flags"]["--batch_size"] == "4"
            assert command["model_args"]["attention_log"].endswith(f"attention/{split}/{command['model']}")
            expected_preset = None if command["model"] == "qwen3vl" else f"seed_{split}"
            assert command["model_args"].get("preset") == expected_preset
            if command["model"] == "qwen3vl_vea":
                assert command["model_args"]["layers_file"].endswith(f"vea_layers_{split}.json")
    profiles = [line for line in completed.stdout.splitlines() if "-m profiling" in line]
    assert len(profiles) == 2 and all("--dtype float32" in line for line in profiles)
    assert sum("analysis report" in line and "--reference" in line for line in completed.stdout.splitlines()) == 1
    assert not (tmp_path / "out").exists()  # a dry run changes nothing


def test_dry_run_with_benchmarks_runs_the_same_models_on_them(setup, tmp_path):
    benchmarks = ["--benchmarks", "local_pope,local_mme", "--include_path", str(setup["tasks"])]
    completed = reproduce(setup, tmp_path / "out", "--dry_run", *benchmarks, in_process=True)
    assert completed.returncode == 0, completed.stderr[-2000:]
    commands = lmms_eval_commands(completed.stdout)
    assert len(commands) == 16  # 4 models x 2 splits, VSR and the benchmarks
    vsr = {(c["model"], c["model_args"]["pretrained"]): c for c in commands if c["tasks"].startswith("vsr_")}
    others = [c for c in commands if not c["tasks"].startswith("vsr_")]
    assert len(vsr) == 8 and len(others) == 8
    for command in others:  # the same model_args: the report merges both evaluations into one run
        assert command["tasks"] == "local_pope,local_mme" and command["flags"]["--include_path"] == str(setup["tasks"])
        same = vsr[(command["model"], command["model_args"]["pretrained"])]
        assert command["model_args"] == same["model_args"]
        assert "/benchmarks/" in command["flags"]["--output_path"]
    report = next(line for line in completed.stdout.splitlines() if "analysis report" in line)
    assert f"--include_path {setup['tasks']}" in report and report.count("/benchmarks/") == 8


def test_an_unknown_benchmark_is_refused_before_anything_runs(setup, tmp_path):
    completed = reproduce(setup, tmp_path / "out", "--benchmarks", "pope,no_such_task", in_process=True)
    assert completed.returncode == 2
    assert "--benchmarks no_such_task: not an lmms-eval task or group here" in completed.stderr
    assert "pope" not in completed.stderr.replace("no_such_task", "")  # a built-in task is known
    assert not (tmp_path / "out").exists()


def test_missing_inputs_are_named_with_their_fix_before_anything_runs(setup, tmp_path):
    args = ["--out", str(tmp_path / "out"), "--random_checkpoint", str(setup["random"]), "--splits", "random"]
    env = lmms_eval_env()
    env.pop("VSR_DATA_DIR", None)
    env.pop("COCO_ANNOTATIONS_DIR", None)
    completed = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO_ROOT, env=env, capture_output=True,
                               text=True, timeout=120)  # fmt: skip
    assert completed.returncode == 2
    lines = [line for line in completed.stderr.splitlines() if line.startswith("  - ")]
    assert len(lines) == 2
    assert "VSR_DATA_DIR is not set" in lines[0] and "export VSR_DATA_DIR=" in lines[0]
    assert "COCO_ANNOTATIONS_DIR is not set" in lines[1] and "--vea_layers study" in lines[1]
    assert not (tmp_path / "out").exists()


def test_the_whole_pipeline_offline_with_the_study_column(setup):
    out = setup["root"] / "out"
    benchmarks = ["--benchmarks", "local_pope", "--include_path", str(setup["tasks"])]
    completed = reproduce(
        setup, out, "--limit", "3", "--batch_size", "2", "--profile_samples", "4", *benchmarks, in_process=True
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    summary = json.loads((out / "report" / "summary.json").read_text())
    seed = json.loads((REPO_ROOT / "scripts" / "studies" / "seed.json").read_text())["reference"]["results"]
    study = {(entry["task"], entry["model"]): entry["value"] for entry in seed}
    for split in ("random", "zeroshot"):
        task = f"vsr_{split}_dev"
        reference = summary["tasks"][task]["reference"]
        assert reference["name"] == "reported by the study"
        models = {entry["model"]: entry for entry in reference["runs"].values()}
        assert set(models) == {"qwen3vl", *INTERVENTIONS}
        for model, entry in models.items():
            assert entry["reported"] == study[(task, model)]
        comparisons = summary["tasks"][task]["metrics"]["accuracy,none"]["comparisons"]
        pretrained = {run["label"]: run["model_args"] for run in summary["runs"]}
        assert len(comparisons) == 3 and all(c["n"] == 3 for c in comparisons.values())
        for label, comparison in comparisons.items():  # each method against the baseline of its own checkpoint
            assert str(setup[split]) in pretrained[label] and str(setup[split]) in pretrained[comparison["baseline"]]
        profile = json.loads((out / f"vea_layers_{split}.json").read_text())
        assert profile["dataset_type"] == split and profile["split"] == "train"
    markdown = (out / "report" / "report.md").read_text()
    assert "| run | metric | ours [95% CI] | reported by the study | ours − reported |" in markdown
    assert markdown.count("Against the results reported by the study") == 2
    records = [json.loads(line) for line in (out / "attention" / "zeroshot" / "qwen3vl_adaptvis" / "records.rank0.jsonl")
               .read_text().splitlines()]  # fmt: skip
    assert records[0]["model_args"]["preset"] == "seed_zeroshot" and records[0]["model_args"]["smoothen_weight"] == 0.1
    # POPE in the same report: one run per model and checkpoint, each method against its checkpoint's baseline
    pope = summary["tasks"]["local_pope"]["metrics"]["pope_accuracy,none"]
    assert len(pope["runs"]) == 8 and len(pope["comparisons"]) == 6
    for label, comparison in pope["comparisons"].items():
        vsr_task = "vsr_random_dev" if str(setup["random"]) in pretrained[label] else "vsr_zeroshot_dev"
        vsr_comparisons = summary["tasks"][vsr_task]["metrics"]["accuracy,none"]["comparisons"]
        assert comparison["n"] == 3 and comparison["baseline"] == vsr_comparisons[label]["baseline"]
    assert [row["task"] for row in summary["overview"]] == ["local_pope", "vsr_random_dev", "vsr_zeroshot_dev"]
    again = reproduce(
        setup, out, "--limit", "3", "--batch_size", "2", "--profile_samples", "4", *benchmarks, in_process=True
    )
    assert again.returncode == 0 and again.stdout.count("skipped") == 18  # 16 evaluations + 2 profiles


# ------------------------------------------------------------ the papers' own experiments (--study)
STUDY_COMMANDS = {"adaptvis": 6, "clvs": 6, "vea": 6}  # lmms-eval runs: each checkpoint x (baseline, methods, variants)


@pytest.mark.parametrize("study", list(STUDY_COMMANDS))
def test_each_study_dry_run_prints_the_papers_setting_numbers_and_commands(study, setup, tmp_path):
    completed = reproduce_study(study, tmp_path / "out", "--dry_run")
    assert completed.returncode == 0, completed.stderr[-2000:]
    spec = json.loads((REPO_ROOT / "scripts" / "studies" / f"{study}.json").read_text())
    method, preset = next(iter(spec["methods"].items()))
    assert f"setting: {method} preset={preset}" in completed.stdout and "  from: " in completed.stdout
    for entry in spec["reference"]["results"]:  # every published number, with where it comes from
        assert f"{entry['value']:>6} ({entry['checkpoint']}; {entry['source']})" in completed.stdout
    commands = lmms_eval_commands(completed.stdout)
    assert len(commands) == STUDY_COMMANDS[study]
    assert {c["model_args"]["pretrained"] for c in commands} == set(spec["checkpoints"].values())
    for command in commands:
        assert command["tasks"] == ",".join(spec["tasks"])
        expected = {spec["methods"].get(command["model"]), *spec.get("variants", {}).get(command["model"], [])}
        assert command["model_args"].get("preset") in expected
        if spec["gen_kwargs"]:
            assert command["flags"]["--gen_kwargs"] == spec["gen_kwargs"]
        arm = {path: name for name, path in spec["checkpoints"].items()}[command["model_args"]["pretrained"]]
        for key, value in {**spec["model_args"], **spec.get("checkpoint_model_args", {}).get(arm, {})}.items():
            shown = command["model_args"][key]
            assert (shown[1:-1] if shown[:1] in "'\"" and "," in str(value) else shown) == str(value)
    assert not (tmp_path / "out").exists()


def reproduce_study(study: str, out: Path, *extra: str, env_extra: dict | None = None):
    return run_script_in_process(SCRIPT, ["--study", study, "--out", str(out), *extra],
                                 lmms_eval_env(**(env_extra or {})), REPO_ROOT)  # fmt: skip


def test_the_adaptvis_study_end_to_end_with_the_papers_column(setup, trained_checkpoint, tmp_path):
    from tests.support.whatsup import write_whatsup

    llava, _ = trained_checkpoint("llava")  # answers in a word: the study's 100-token answers end at once
    whatsup = write_whatsup(tmp_path / "whatsup", per_relation=1)
    out = tmp_path / "out"
    completed = reproduce_study(
        "adaptvis", out, "--checkpoint", f"llava-1.5-7b={llava}", "--splits", "llava-1.5-7b", "--limit", "2",
        "--batch_size", "2",
        env_extra={"WHATSUP_DATA_DIR": str(whatsup), "VSR_DATA_DIR": str(setup["data"]), "ADAPTVIS_PROMPTS_DIR": ""},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    summary = json.loads((out / "report" / "summary.json").read_text())
    reference = json.loads((out / "reference.json").read_text())
    assert {entry["pretrained"] for entry in reference["results"]} == {str(llava)}
    controlled = summary["tasks"]["whatsup_controlled_a_adaptvis"]["reference"]  # AdaptVis' test part
    # without AdaptVis' prompt files the questions are rebuilt: the dry run warns, the reference column says so
    output = completed.stdout + completed.stderr
    assert "warning: ADAPTVIS_PROMPTS_DIR is not set, so ours asked the WhatsUp questions rebuilt" in output
    assert controlled["name"].startswith(
        "reported by AdaptVis (project page); ours asked the WhatsUp questions rebuilt"
    )
    assert controlled["name"].endswith("(ADAPTVIS_PROMPTS_DIR unset)")
    reported = {label.split("preset=")[-1].rstrip(")") if "preset=" in label else entry["model"]: entry["reported"]
                for label, entry in controlled["runs"].items()}  # fmt: skip
    assert reported == {"vlm_baseline": pytest.approx(0.603), "adaptvis_paper": pytest.approx(0.849),
                        "scalingvis_paper": pytest.approx(0.645)}  # fmt: skip
    vsr = summary["tasks"]["vsr_zeroshot_test_adaptvis"]["reference"]["metrics"]
    assert {e["model"]: e["reported"] for e in vsr["tpr_tnr_harmonic_mean"].values()}["vlm_adaptvis"] == pytest.approx(
        0.625
    )
    comparison = summary["tasks"]["whatsup_controlled_a_adaptvis"]["metrics"]["accuracy,none"]["comparisons"]
    # AdaptVis and ScalingVis, each against the baseline
    assert [c["baseline"] for c in comparison.values()] == ["vlm_baseline"] * 2 and len(summary["tasks"]) == 7
    assert (out / "report" / "report.md").read_text().count("Against the results reported by AdaptVis") == 7


def test_the_clvs_and_vea_studies_end_to_end_on_tiny_checkpoints(setup, family_checkpoint, tmp_path):
    local = ["--tasks", "local_pope", "--include_path", str(setup["tasks"]), "--limit", "2", "--batch_size", "2"]
    llava, qwen, next_, gemma = (family_checkpoint(f) for f in ("llava", "qwen2_5_vl", "llava_next", "gemma3"))
    clvs = reproduce_study(
        "clvs", tmp_path / "clvs", "--checkpoint", f"llava-1.5-7b={llava}", "--checkpoint",
        f"qwen2.5-vl-7b={qwen}", "--checkpoint", f"llava-next-8b={next_}", *local,
    )  # fmt: skip
    assert clvs.returncode == 0, clvs.stdout[-3000:] + clvs.stderr[-3000:]
    summary = json.loads((tmp_path / "clvs" / "report" / "summary.json").read_text())
    comparisons = summary["tasks"]["local_pope"]["metrics"]["pope_accuracy,none"]["comparisons"]
    assert len(comparisons) == 3 and all(c["n"] == 2 for c in comparisons.values())  # each family against its own
    records = [json.loads(line) for path in (tmp_path / "clvs" / "attention").rglob("records.rank0.jsonl")
               for line in path.read_text().splitlines()]  # fmt: skip
    assert {r["generated_tokens"] for r in records} == {1}  # the paper's one generated token
    vea = reproduce_study(
        "vea", tmp_path / "vea", "--checkpoint", f"qwen2.5-vl-7b={qwen}", "--checkpoint", f"gemma-3-4b={gemma}",
        "--splits", "qwen2.5-vl-7b,gemma-3-4b", "--vea_layers", "[2,3]", *local,
    )  # fmt: skip
    assert vea.returncode == 0, vea.stdout[-3000:] + vea.stderr[-3000:]
    summary = json.loads((tmp_path / "vea" / "report" / "summary.json").read_text())
    runs = [(run["model"], run["model_args"]) for run in summary["runs"]]
    assert len(runs) == 4  # two checkpoints x (baseline, VEA); Qwen's pixel cap only on Qwen (Gemma-3 has none)
    for model, arguments in runs:
        assert ("max_pixels=262144" in arguments) == (str(qwen) in arguments)
        assert model == "vlm_baseline" or ("preset=vea_paper" in arguments and "layers=[2,3]" in arguments)
