"""finetune end to end on the tiny checkpoint: what trains, what is saved, exact resume, learning, two processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from finetune.checkpoint import ADAPTER_DIR, TRAINING_STATE
from finetune.plan import Plan
from finetune.tracking import read_data_order
from tests.support.commands import SMALL, find_results, lmms_eval_env, run_lmms_eval, train
from tests.support.data import colour_vsr_set
from tests.support.environment import REPO_ROOT


@pytest.fixture(scope="module")
def colour_data(tmp_path_factory) -> Path:
    return colour_vsr_set(tmp_path_factory.mktemp("colour") / "data", n_train=48, n_eval=8)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_freeze_vision_keeps_every_vision_parameter_bit_identical(tmp_path, colour_data, tiny_checkpoint):
    train(colour_data, tiny_checkpoint, tmp_path, *SMALL, "--max_steps", "2", "--freeze_vision")
    before, after = weights(tiny_checkpoint), weights(tmp_path / "checkpoint-2")
    assert before.keys() == after.keys()
    vision = [name for name in before if "visual." in name]
    language = [name for name in before if "visual." not in name]
    assert len(vision) == 39 and len(language) == 47
    assert all(torch.equal(before[name], after[name]) for name in vision)
    assert [name for name in language if torch.equal(before[name], after[name])] == []


def test_lora_trains_only_adapters_and_the_merged_checkpoint_loads(tmp_path, colour_data, tiny_checkpoint):
    from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

    train(
        colour_data,
        tiny_checkpoint,
        tmp_path,
        *SMALL,
        "--max_steps",
        "2",
        "--use_lora",
        "--lora_r",
        "4",
        "--lora_alpha",
        "8",
        "--lora_target_modules",
        "q_proj,v_proj",
    )
    folder = tmp_path / "checkpoint-2"
    base = weights(tiny_checkpoint)
    state = weights(folder / TRAINING_STATE)  # the PEFT model as trained: base weights + adapters
    prefix = "base_model.model."
    adapters = {k: v for k, v in state.items() if "lora_" in k}
    assert len(adapters) == 2 * 2 * 4  # (A, B) x (q_proj, v_proj) x 4 layers
    assert all(not torch.equal(v, torch.zeros_like(v)) for k, v in adapters.items() if "lora_B" in k)  # B starts at 0
    frozen = {k.removeprefix(prefix).replace(".base_layer", ""): v for k, v in state.items() if "lora_" not in k}
    assert frozen.keys() == base.keys()
    assert all(torch.equal(base[k], frozen[k]) for k in base)

    model, info = Qwen3VLForConditionalGeneration.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    merged = weights(folder)
    assert merged.keys() == base.keys()
    changed = sorted(k for k in base if not torch.equal(base[k], merged[k]))
    assert len(changed) == 8 and all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in changed)
    for key in changed:
        stem = prefix + key.removesuffix(".weight")
        delta = state[f"{stem}.lora_B.default.weight"] @ state[f"{stem}.lora_A.default.weight"] * (8 / 4)
        torch.testing.assert_close(merged[key], base[key] + delta, atol=1e-6, rtol=0)
    assert (folder / ADAPTER_DIR / "adapter_model.safetensors").is_file()
    assert AutoProcessor.from_pretrained(folder).image_processor.merge_size == 2


def test_a_run_stopped_after_a_checkpoint_and_resumed_ends_with_the_same_weights(
    tmp_path, colour_data, tiny_checkpoint
):
    full = train(colour_data, tiny_checkpoint, tmp_path / "full", *SMALL, "--max_steps", "4", "--save_steps", "2",
                 "--save_total_limit", "1")  # fmt: skip
    assert [p.name for p in (tmp_path / "full").glob("checkpoint-*")] == ["checkpoint-4"]
    with pytest.raises(FileExistsError, match="--resume_from_checkpoint latest"):
        train(colour_data, tiny_checkpoint, tmp_path / "full", *SMALL, "--max_steps", "4")
    # "killed" during step 3: checkpoint-2 is the last one on disk, the data log already has step 3
    train(colour_data, tiny_checkpoint, tmp_path / "cut", *SMALL, "--max_steps", "4", "--save_steps", "2",
          "--stop_at_step", "3")  # fmt: skip
    shutil.rmtree(tmp_path / "cut" / "checkpoint-3")
    assert sorted(read_data_order(tmp_path / "cut" / "data_order" / "rank-0.jsonl")) == [1, 2, 3]
    resumed = train(colour_data, tiny_checkpoint, tmp_path / "cut", *SMALL, "--max_steps", "4", "--save_steps", "2",
                    "--resume_from_checkpoint", "latest")  # fmt: skip
    uninterrupted, continued = weights(tmp_path / "full" / "checkpoint-4"), weights(tmp_path / "cut" / "checkpoint-4")
    for name, value in uninterrupted.items():
        torch.testing.assert_close(continued[name], value, atol=1e-6, rtol=0)
    base = weights(tiny_checkpoint)
    assert not torch.equal(
        base["model.visual.patch_embed.proj.weight"], continued["model.visual.patch_embed.proj.weight"]
    )
    assert read_data_order(tmp_path / "cut" / "data_order" / "rank-0.jsonl") == read_data_order(
        tmp_path / "full" / "data_order" / "rank-0.jsonl"
    )
    assert [r["step"] for r in resumed["log_history"]] == [r["step"] for r in full["log_history"]] == [0, 1, 2, 3, 4]
    for mine, theirs in zip(resumed["log_history"], full["log_history"]):
        assert mine.get("eval_loss") == pytest.approx(theirs.get("eval_loss"), abs=1e-6)
        assert mine.get("train_loss") == pytest.approx(theirs.get("train_loss"), abs=1e-6)
    assert resumed["finished"] and resumed["global_step"] == 4


def test_stop_at_accuracy_ends_at_the_first_evaluation_that_reaches_it(tmp_path, colour_data, tiny_checkpoint):
    settings = ["--per_device_batch_size", "8", "--gradient_accumulation_steps", "1", "--max_steps", "8",
                "--eval_steps", "2", "--eval_fraction", "0.2", "--learning_rate", "5e-3", "--warmup_steps", "2",
                "--save_steps", "2"]  # fmt: skip
    full = train(colour_data, tiny_checkpoint, tmp_path / "full", *settings)
    accuracy = {r["step"]: r["eval_accuracy"] for r in full["log_history"] if "eval_accuracy" in r and r["step"]}
    first = next(step for step, value in accuracy.items() if value > 0)  # the run learns: accuracy 1.0 at step 8
    assert first < 8 and full["reached_accuracy_at"] is None
    stopped = train(colour_data, tiny_checkpoint, tmp_path / "stopped", *settings,
                    "--stop_at_accuracy", str(accuracy[first]))  # fmt: skip
    assert stopped["reached_accuracy_at"] == stopped["global_step"] == first and stopped["finished"]
    assert stopped["last_checkpoint"] == str(tmp_path / "stopped" / f"checkpoint-{first}")
    assert max(r["step"] for r in stopped["log_history"]) == first
    assert sorted(read_data_order(tmp_path / "stopped" / "data_order" / "rank-0.jsonl")) == list(range(1, first + 1))
    for name, value in weights(tmp_path / "full" / f"checkpoint-{first}").items():
        torch.testing.assert_close(weights(Path(stopped["last_checkpoint"]))[name], value, atol=0, rtol=0)


def test_training_lowers_held_out_loss_and_lmms_eval_scores_the_checkpoint(tmp_path, colour_data, tiny_checkpoint):
    summary = train(
        colour_data, tiny_checkpoint, tmp_path / "run", "--per_device_batch_size", "8", "--gradient_accumulation_steps",
        "1", "--max_steps", "8", "--save_steps", "8", "--eval_steps", "4", "--eval_fraction", "0.2",
        "--learning_rate", "5e-3", "--warmup_steps", "2",
    )  # fmt: skip
    evaluations = {r["step"]: r for r in summary["log_history"] if "eval_loss" in r}
    assert sorted(evaluations) == [0, 4, 8]
    assert summary["data_settings"]["n_train"] == 38 and summary["data_settings"]["n_held_out"] == 10
    assert evaluations[8]["eval_loss"] < 0.7 * evaluations[0]["eval_loss"]
    assert evaluations[8]["eval_accuracy"] == 1.0
    checkpoint = Path(summary["best_checkpoint"])
    assert checkpoint == tmp_path / "run" / "checkpoint-8"

    output = tmp_path / "lmms"
    args = ["--model", "qwen3vl", "--model_args", f"pretrained={checkpoint}", "--tasks", "vsr_random_dev"]
    completed = run_lmms_eval([*args, "--limit", "4", "--log_samples", "--output_path", str(output)],
                              lmms_eval_env(colour_data))  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    results, samples = find_results(output)
    answers = [sample["filtered_resps"] for sample in sorted(samples["vsr_random_dev"], key=lambda s: s["doc_id"])]
    print("lmms-eval answers:", answers, results["results"]["vsr_random_dev"])
    assert len(answers) == 4
    assert results["results"]["vsr_random_dev"]["accuracy,none"] == 1.0


def test_accelerate_launch_two_cpu_processes_train_on_disjoint_rows(tmp_path, colour_data, tiny_checkpoint):
    """accelerate's --cpu launcher starts one process; --multi_gpu with ACCELERATE_USE_CPU=1 starts N (gloo)."""
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", "29531"]
    command += ["-m", "finetune", "--vsr_data_dir", str(colour_data), "--model_id", str(tiny_checkpoint)]
    command += ["--output_dir", str(tmp_path), "--max_steps", "2", "--per_device_batch_size", "2"]
    command += ["--gradient_accumulation_steps", "1", "--eval_fraction", "0.1", "--dataloader_num_workers", "0"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    completed = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "2 process(es) x 2 x 1 accumulation = effective batch 4" in completed.stdout
    ranks = [read_data_order(tmp_path / "data_order" / f"rank-{r}.jsonl") for r in (0, 1)]
    assert sorted(ranks[0]) == sorted(ranks[1]) == [1, 2]
    # which rows: train.jsonl line numbers of the plan's global batch, half on each process
    from finetune.data import load_splits

    train_rows = [ex.index for ex in load_splits(colour_data, "random", eval_fraction=0.1).train]
    plan = Plan(len(train_rows), 2, 1, 2, seed=42)
    for step in (1, 2):
        assert len(ranks[0][step]) == len(ranks[1][step]) == 2
        assert set(ranks[0][step]).isdisjoint(ranks[1][step])
        assert sorted(ranks[0][step] + ranks[1][step]) == sorted(train_rows[p] for p in plan.global_batch(step - 1))
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    assert state["finished"] and (tmp_path / "checkpoint-2" / "model.safetensors").is_file()
    # one process with 2 x 2 accumulation sees the same rows per step: the same gradients, the same weights
    alone = train(colour_data, tiny_checkpoint, tmp_path / "alone", "--max_steps", "2", "--per_device_batch_size", "2",
                  "--gradient_accumulation_steps", "2", "--eval_fraction", "0.1")  # fmt: skip
    alone_rows = read_data_order(tmp_path / "alone" / "data_order" / "rank-0.jsonl")
    assert {step: sorted(rows) for step, rows in alone_rows.items()} == {
        step: sorted(ranks[0][step] + ranks[1][step]) for step in (1, 2)
    }
    two, one = weights(tmp_path / "checkpoint-2"), weights(tmp_path / "alone" / "checkpoint-2")
    for name, value in one.items():
        torch.testing.assert_close(two[name], value, atol=1e-5, rtol=0)
    assert [r["train_loss"] for r in alone["log_history"][1:]] == pytest.approx(
        [r["train_loss"] for r in state["log_history"][1:]], abs=1e-5
    )
    assert sorted(p.name for p in (tmp_path / "checkpoint-2" / TRAINING_STATE).glob("random_states_*")) == [
        "random_states_0.pkl",
        "random_states_1.pkl",
    ]


def test_freeze_vision_on_llava_keeps_its_clip_tower_and_trains_the_projector(tmp_path, colour_data, family_checkpoint):
    checkpoint = family_checkpoint("llava")
    train(colour_data, checkpoint, tmp_path, *SMALL, "--max_steps", "2", "--freeze_vision")
    before, after = weights(checkpoint), weights(tmp_path / "checkpoint-2")
    assert before.keys() == after.keys()
    tower = [name for name in before if "vision_tower." in name]
    rest = [name for name in before if "vision_tower." not in name]
    assert len(tower) > 0 and all(torch.equal(before[name], after[name]) for name in tower)
    projector = [name for name in rest if "multi_modal_projector" in name]
    assert len(projector) == 4 and not any(torch.equal(before[name], after[name]) for name in projector)
    assert [name for name in rest if torch.equal(before[name], after[name])] == []
