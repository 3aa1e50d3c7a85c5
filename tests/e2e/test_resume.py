"""A killed evaluation resumes: each answer is kept as it is given (``answer_cache=``), a rerun of the same command
computes only the rest, writes the results an uninterrupted run writes, and leaves one attention record per document.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from models.answer_cache import AnswerCache, Request, cache_root, checkpoint_fingerprint
from models.attention_log import read_records
from tests.support.commands import find_results, lmms_eval_env, run_lmms_eval

LIMIT = 16  # the rows the VSR fixture has images for
MODEL = "qwen3vl_adaptvis"


def _command(checkpoint: Path, root: Path) -> list[str]:
    """The evaluation as a user types it, everything it writes under ``root``."""
    model_args = f"pretrained={checkpoint},answer_cache={root / 'answers'},attention_log={root / 'attention'}"
    return ["--model", MODEL, "--model_args", model_args, "--tasks", "vsr_random_dev", "--limit", str(LIMIT),
            "--gen_kwargs", "max_new_tokens=16", "--log_samples", "--output_path", str(root / "out")]  # fmt: skip


def _kept_lines(root: Path) -> list[dict]:
    lines = []
    for path in sorted((root / "answers").glob("*/answers.rank*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return lines


def _answers(samples: list[dict]) -> dict[int, str]:
    return {sample["doc_id"]: sample["filtered_resps"] for sample in samples}


@pytest.mark.slow
def test_a_killed_evaluation_resumes_with_the_uninterrupted_results(tmp_path, tiny_checkpoint, vsr_data_dir):
    env = lmms_eval_env(vsr_data_dir)
    env.pop("VSR_ANSWER_CACHE", None)
    reference = tmp_path / "uninterrupted"
    assert run_lmms_eval(_command(tiny_checkpoint, reference), env).returncode == 0
    expected_results, expected_samples = find_results(reference / "out")

    killed = tmp_path / "killed"
    script = Path(sys.executable).parent / "lmms-eval"
    process = subprocess.Popen([str(script), *_command(tiny_checkpoint, killed)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while len(_kept_lines(killed)) < 3 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    before = len(_kept_lines(killed))
    assert 3 <= before < LIMIT, f"the run was not killed mid-way ({before} of {LIMIT} answers kept)"
    assert not list((killed / "out").rglob("*_results.json"))

    completed = run_lmms_eval(_command(tiny_checkpoint, killed), env)  # the same command again
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert f"{before} of {LIMIT} answers kept from an earlier run" in completed.stdout + completed.stderr
    kept = _kept_lines(killed)
    assert len(kept) == LIMIT and sorted(entry["doc_id"] for entry in kept) == list(range(LIMIT))  # none twice
    results, samples = find_results(killed / "out")
    assert results["results"] == expected_results["results"]
    assert _answers(samples["vsr_random_dev"]) == _answers(expected_samples["vsr_random_dev"])
    records = read_records(killed / "attention")
    assert sorted(record["doc_id"] for record in records) == list(range(LIMIT))  # one record per document
    raw = (killed / "attention" / "records.rank0.jsonl").read_text().splitlines()
    assert len(raw) == LIMIT
    expected_records = {record["doc_id"]: record for record in read_records(reference / "attention")}
    for record in records:
        assert record["answer"] == expected_records[record["doc_id"]]["answer"]
        assert record["decision"] == expected_records[record["doc_id"]]["decision"]
        assert (killed / "attention" / record["maps_file"]).is_file()


def test_an_answer_is_served_only_to_the_request_it_was_computed_for(tmp_path, tiny_checkpoint):
    """The run identity covers the model, its arguments and the checkpoint's files; the request key the task, the
    document, the context and the generation settings."""
    request = Request("vsr_random_dev", 3, "Is it?", {"max_new_tokens": 8}, {"caption": "A", "image": object()})
    cache = AnswerCache(tmp_path, MODEL, {"pretrained": str(tiny_checkpoint)}, str(tiny_checkpoint), rank=0)
    cache.put([(request, "True")])
    again = AnswerCache(tmp_path, MODEL, {"pretrained": str(tiny_checkpoint)}, str(tiny_checkpoint), rank=1)
    assert again.get(request) == "True" and again.documents == {("vsr_random_dev", 3)}
    for other in (
        Request("vsr_random_dev", 4, "Is it?", {"max_new_tokens": 8}, {"caption": "A"}),
        Request("vsr_random_dev", 3, "Is it so?", {"max_new_tokens": 8}, {"caption": "A"}),
        Request("vsr_random_dev", 3, "Is it?", {"max_new_tokens": 9}, {"caption": "A"}),
        Request("vsr_random_dev", 3, "Is it?", {"max_new_tokens": 8}, {"caption": "B"}),
        Request("whatsup", 3, "Is it?", {"max_new_tokens": 8}, {"caption": "A"}),
    ):
        assert again.get(other) is None, other
    assert again.get(Request("vsr_random_dev", 3, "Is it?", {"max_new_tokens": 8}, {"caption": "A"})) == "True"
    args = {"pretrained": str(tiny_checkpoint), "sharpen_weight": "1.5"}
    assert AnswerCache(tmp_path, MODEL, args, str(tiny_checkpoint), 0).get(request) is None
    assert AnswerCache(tmp_path, "qwen3vl", {"pretrained": str(tiny_checkpoint)}, str(tiny_checkpoint), 0).answers == {}
    before = checkpoint_fingerprint(str(tiny_checkpoint))
    config = tiny_checkpoint / "config.json"
    os.utime(config, ns=(config.stat().st_atime_ns, config.stat().st_mtime_ns + 1_000_000_000))
    assert checkpoint_fingerprint(str(tiny_checkpoint)) != before  # a checkpoint saved again computes afresh


def test_a_line_cut_short_by_a_kill_costs_only_itself(tmp_path, tiny_checkpoint):
    first = Request("t", 0, "a", {}, {})
    second = Request("t", 1, "b", {}, {})
    cache = AnswerCache(tmp_path, MODEL, {}, str(tiny_checkpoint), rank=0)
    cache.put([(first, "yes")])
    with cache.path.open("a") as handle:
        handle.write('{"key": "cut sh')  # the process died mid-line
    resumed = AnswerCache(tmp_path, MODEL, {}, str(tiny_checkpoint), rank=0)
    resumed.put([(second, "no")])
    final = AnswerCache(tmp_path, MODEL, {}, str(tiny_checkpoint), rank=0)
    assert (final.get(first), final.get(second)) == ("yes", "no")


def test_where_the_answers_are_kept(monkeypatch, tmp_path):
    monkeypatch.delenv("VSR_ANSWER_CACHE", raising=False)
    assert cache_root(None) == Path("~/.cache/vsr_attention_steering/answers").expanduser()
    monkeypatch.setenv("VSR_ANSWER_CACHE", str(tmp_path))
    assert cache_root(None) == tmp_path and cache_root(str(tmp_path / "mine")) == tmp_path / "mine"
    assert cache_root("none") is None
    monkeypatch.setenv("VSR_ANSWER_CACHE", "none")
    assert cache_root(None) is None and cache_root(str(tmp_path)) == tmp_path
