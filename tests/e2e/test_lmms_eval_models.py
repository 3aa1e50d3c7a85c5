"""lmms-eval's own models run our tasks: its Qwen3-VL, as the chat model it is by default and as a simple model
(``--force_simple``), answers ``vsr_random_dev`` and ``whatsup`` exactly as our ``qwen3vl`` does, given the same
system prompt, dtype and pixel budget (the command of docs/OTHER_BENCHMARKS.md, "lmms-eval's own models").

The two request shapes differ (``local_tasks.task``): a chat model is handed ``doc_to_messages``, a simple one
``doc_to_visual``; a task class that built the simple shape for a chat model crashed lmms-eval's ``qwen3_vl``. The
checkpoint is the fine-tuned tiny Qwen3-VL, whose answers differ between documents, so equal answers mean the same
prompts and pixels reached the model. Its images are 64 x 64: a multiple of 32 px inside every path's pixel budget
(lmms-eval's chat path resizes with qwen-vl-utils' own budget, not the model's), so no path resizes them.
"""

from __future__ import annotations

import pytest

from tests.support.commands import find_results, lmms_eval_env, run_lmms_eval
from tests.support.whatsup import write_whatsup

SYSTEM = "You are a helpful assistant."  # lmms-eval's qwen3_vl default system prompt
PIXELS = "min_pixels=4096,max_pixels=1605632"  # 64 x 64 images stay as they are (32 px per token)
TASKS = "vsr_random_dev,whatsup"
LIMIT = 4
SUBSETS = ("controlled_a", "controlled_b", "coco_one", "coco_two", "vg_one", "vg_two")


@pytest.fixture(scope="module")
def answers(trained, tmp_path_factory):
    """Each run's answers, ``{run: {(task, doc_id): answer}}``."""
    checkpoint, data = trained
    root = tmp_path_factory.mktemp("lmms_eval_models")
    env = lmms_eval_env(data, WHATSUP_DATA_DIR=str(write_whatsup(root / "whatsup", per_relation=1)))
    runs = {
        "ours": ("qwen3vl", f"pretrained={checkpoint},device=cpu,dtype=bfloat16,system_prompt='{SYSTEM}',{PIXELS}", []),
        "chat": ("qwen3_vl", f"pretrained={checkpoint},device=cpu,device_map=cpu,{PIXELS}", []),
        "simple": ("qwen3_vl", f"pretrained={checkpoint},device=cpu,device_map=cpu,{PIXELS}", ["--force_simple"]),
    }
    got = {}
    for name, (model, model_args, extra) in runs.items():
        output = root / name
        args = ["--model", model, "--model_args", model_args, "--tasks", TASKS, "--limit", str(LIMIT)]
        completed = run_lmms_eval(
            [*args, "--batch_size", "1", "--log_samples", "--output_path", str(output), *extra], env
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        results, samples = find_results(output)
        kind = "simple" if name != "chat" else "chat"
        assert results["config"]["model"] == model and results["config"]["model_backend"].endswith(f"({kind})")
        got[name] = {
            (task, sample["doc_id"]): sample["filtered_resps"][0] if isinstance(sample["filtered_resps"], list)
            else sample["filtered_resps"]
            for task, task_samples in samples.items()
            for sample in task_samples
        }  # fmt: skip
    return got


def test_every_document_was_answered_by_each_run(answers):
    for name, run in answers.items():
        tasks = sorted({task for task, _ in run})
        assert tasks == ["vsr_random_dev", *sorted(f"whatsup_{s}" for s in SUBSETS)], name
        assert len(run) == LIMIT * len(tasks), name


def test_lmms_eval_chat_qwen3_vl_answers_as_ours(answers):
    assert answers["chat"] == answers["ours"]


def test_lmms_eval_simple_qwen3_vl_answers_as_ours(answers):
    assert answers["simple"] == answers["ours"]


def test_the_answers_tell_documents_apart(answers):
    """Otherwise equal answers would prove nothing about the prompts and pixels."""
    vsr = [answer for (task, _), answer in answers["ours"].items() if task == "vsr_random_dev"]
    assert len(set(vsr)) > 1, vsr
