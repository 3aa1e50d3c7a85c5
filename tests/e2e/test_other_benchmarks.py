"""Other benchmarks, on lmms-eval's own installed task definitions: POPE, CV-Bench 2D, MUIRBench, MMMU val.

Each task is a test-time YAML that ``include``s the installed task file unchanged and only renames the task and
points it at a small parquet file written here (``tests/support/local_benchmarks.py``), with exactly the columns the task's
``utils.py`` reads. Never a copy of lmms-eval's task code.
"""

from __future__ import annotations

import re
from pathlib import Path

import datasets
import numpy as np
import pytest
from lmms_eval.api.instance import Instance
from PIL import Image

from models.attention_log import read_records
from plugin.registered import Qwen3VLAdaptVis
from plugin.registered import Qwen3VLBaseline as Qwen3VL
from tests.support.commands import find_results, lmms_eval_env, run_lmms_eval
from tests.support.local_benchmarks import SPLITS, write_local_task

pytestmark = pytest.mark.slow
DOCS = 3
MODELS = ("qwen3vl", "qwen3vl_adaptvis", "qwen3vl_clvs", "qwen3vl_vea")
METRICS = {
    "pope": ["pope_accuracy", "pope_precision", "pope_recall", "pope_f1_score", "pope_yes_ratio"],
    "cv_bench_2d": ["cv_bench_acc"],
    "muirbench": ["muirbench_score_overall"],
    "mmmu_val": ["mmmu_acc"],
}
CONFORMANCE = tuple(METRICS)


def _image(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def _rows(task: str, rng: np.random.Generator) -> tuple[list[dict], datasets.Features]:
    """DOCS documents with the columns the installed task's utils.py reads."""
    image = datasets.Image()
    if task == "pope":
        rows = [
            {"question_id": str(i), "question": f"Is there a cat in the image {i}?", "answer": ["yes", "no"][i % 2],
             "image": _image(rng, 64, 96)}
            for i in range(DOCS)
        ]  # fmt: skip
        features = {"question_id": datasets.Value("string"), "question": datasets.Value("string"),
                    "answer": datasets.Value("string"), "image": image}  # fmt: skip
    elif task == "cv_bench_2d":
        rows = [
            {"idx": i, "type": "2D", "task": "Count", "source": "COCO", "prompt": f"How many cups are there? {i}",
             "choices": ["1", "2", "3"], "answer": "(B)", "image": _image(rng, 96, 64)}
            for i in range(DOCS)
        ]  # fmt: skip
        features = {"idx": datasets.Value("int64"), "type": datasets.Value("string"), "task": datasets.Value("string"),
                    "source": datasets.Value("string"), "prompt": datasets.Value("string"),
                    "choices": datasets.Sequence(datasets.Value("string")), "answer": datasets.Value("string"),
                    "image": image}  # fmt: skip
    elif task == "muirbench":
        rows = [
            {"idx": str(i), "task": "Image-Text Matching", "question": "Which image shows a dog?",
             "options": ["first", "second"], "answer": "A", "image_relation": "Narrative", "image_type": "Photo",
             "image_list": [_image(rng, 64, 64), _image(rng, 96, 64)]}
            for i in range(DOCS)
        ]  # fmt: skip
        features = {"idx": datasets.Value("string"), "task": datasets.Value("string"),
                    "question": datasets.Value("string"), "options": datasets.Sequence(datasets.Value("string")),
                    "answer": datasets.Value("string"), "image_relation": datasets.Value("string"),
                    "image_type": datasets.Value("string"), "image_list": datasets.Sequence(image)}  # fmt: skip
    else:  # mmmu_val: image 2 is mentioned before image 1, and the two differ in size
        rows = [
            {"id": f"validation_Art_{i + 1}", "question": f"Compare <image 2> with <image 1>. Which is older? ({i})",
             "options": "['the left one', 'the right one']", "question_type": "multiple-choice", "answer": "A",
             "image_1": _image(rng, 64, 64), "image_2": _image(rng, 64, 128)}
            for i in range(DOCS)
        ]  # fmt: skip
        features = {"id": datasets.Value("string"), "question": datasets.Value("string"),
                    "options": datasets.Value("string"), "question_type": datasets.Value("string"),
                    "answer": datasets.Value("string"), "image_1": image, "image_2": image}  # fmt: skip
    return rows, datasets.Features(features)


@pytest.fixture(scope="module")
def task_folder(tmp_path_factory) -> Path:
    """Test-time task YAMLs including the installed task files, and their parquet data."""
    folder = tmp_path_factory.mktemp("conformance_tasks")
    rng = np.random.default_rng(0)
    for task in CONFORMANCE:
        rows, features = _rows(task, rng)
        write_local_task(folder, task, rows, dict(features))
    return folder


def _env(tmp: Path) -> dict[str, str]:
    return lmms_eval_env(HF_DATASETS_CACHE=str(tmp / "hf_datasets"))


def _run(
    tmp: Path,
    task_folder: Path,
    checkpoint: Path,
    model: str,
    batch_size: int,
    *extra_args: str,
    tasks=CONFORMANCE,
) -> Path:
    output, log = tmp / f"{model}_bs{batch_size}", tmp / f"log_{model}_bs{batch_size}"
    args = [f"pretrained={checkpoint}", f"batch_size={batch_size}", f"attention_log={log}", *extra_args]
    if model == "qwen3vl_vea":
        args.append("layers=[2,3]")  # valid on the 4-layer and the 8-layer checkpoints
    completed = run_lmms_eval(
        [
            "--model",
            model,
            "--model_args",
            ",".join(args),
            "--tasks",
            ",".join(f"local_{task}" for task in tasks),
            "--include_path",
            str(task_folder),
        ]
        + ["--log_samples", "--output_path", str(output)],
        _env(tmp),
        timeout=600,
    )
    assert list(output.rglob("*_results.json")), f"{model} bs{batch_size}: no results\n{completed.stderr[-4000:]}"
    return output


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, task_folder, trained):
    """Every model at batch sizes 1 and 3. The fine-tuned checkpoint ends its turn after one word, where a random
    one would write all of CV-Bench's 1,024 tokens: the same code paths in a fraction of the time."""
    tmp = tmp_path_factory.mktemp("conformance_runs")
    checkpoint = trained[0]
    return {(model, size): _run(tmp, task_folder, checkpoint, model, size) for model in MODELS for size in (1, 3)}


def _share(hits: list[bool]) -> float:
    return sum(hits) / len(hits) if hits else 0.0


def independent_metrics(task: str, samples: list[dict]) -> dict[str, float]:
    """Each metric from the samples by its definition, written here (not the task's aggregation code).

    POPE from the answers and targets themselves (lower-cased, stripped; precision and recall over exact
    "yes"/"no"; lmms-eval's ``pope_yes_ratio`` is the share of "yes" among the targets). The others from the
    judgement each document's record logged: CV-Bench's ``is_correct``, MUIRBench's answer against the filtered
    letter, MMMU's parsed prediction against the answer (lmms-eval rounds MMMU to 5 decimals).
    """
    if task == "pope":
        pairs = [(s["filtered_resps"].lower().strip(), s["target"].lower().strip()) for s in samples]
        true_yes = sum(p == "yes" and g == "yes" for p, g in pairs)
        said_yes = sum(p == "yes" and g in ("yes", "no") for p, g in pairs)
        is_yes = sum(g == "yes" and p in ("yes", "no") for p, g in pairs)
        precision = true_yes / said_yes if said_yes else 0.0
        recall = true_yes / is_yes if is_yes else 0.0
        return {
            "pope_accuracy": _share([p == g for p, g in pairs]),
            "pope_precision": precision,
            "pope_recall": recall,
            "pope_f1_score": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "pope_yes_ratio": _share([g == "yes" for _, g in pairs]),
        }
    if task == "cv_bench_2d":
        for s in samples:  # the record's judgement is the parsed letter against the target's
            record = s["cv_bench_acc"]
            assert record["is_correct"] == (record["pred_parsed"] == s["target"].strip("()"))
        return {"cv_bench_acc": _share([s["cv_bench_acc"]["is_correct"] for s in samples])}
    if task == "muirbench":
        hits = [s["filtered_resps"].lower().strip() == s["target"].lower().strip() for s in samples]
        return {"muirbench_score_overall": _share(hits)}
    hits = [s["mmmu_acc"]["answer"] in s["mmmu_acc"]["parsed_pred"] for s in samples]
    return {"mmmu_acc": round(_share(hits), 5)}


@pytest.mark.parametrize("model", MODELS)
def test_results_carry_each_task_metric(evaluated, model):
    results, samples = find_results(evaluated[(model, 1)])
    for task, metrics in METRICS.items():
        reported = results["results"][f"local_{task}"]
        expected = independent_metrics(task, samples[f"local_{task}"])
        assert sorted(expected) == sorted(metrics)
        for metric in metrics:
            value = next(v for k, v in reported.items() if k.split(",")[0] == metric)
            assert value == pytest.approx(expected[metric], abs=1e-12), (task, metric, value)
        assert len(samples[f"local_{task}"]) == DOCS


@pytest.mark.parametrize("model", MODELS)
def test_answers_do_not_depend_on_the_batch_size(evaluated, model):
    _, one = find_results(evaluated[(model, 1)])
    _, three = find_results(evaluated[(model, 3)])
    for task in METRICS:
        by_doc = {sample["doc_id"]: sample["filtered_resps"] for sample in one[f"local_{task}"]}
        assert by_doc == {sample["doc_id"]: sample["filtered_resps"] for sample in three[f"local_{task}"]}, task


def _task_documents(task_folder: Path, task: str):
    from lmms_eval.tasks import TaskManager, get_task_dict

    manager = TaskManager(include_path=str(task_folder))
    local = get_task_dict([f"local_{task}"], manager)[f"local_{task}"]
    split = SPLITS[task]
    return local, [local.dataset[split][i] for i in range(DOCS)]


def test_interleaved_mmmu_puts_each_image_at_its_placeholder(task_folder, tiny_checkpoint, tmp_path):
    task, docs = _task_documents(task_folder, "mmmu_val")
    contexts = [task.doc_to_text(doc) for doc in docs]
    visuals = [task.doc_to_visual(doc) for doc in docs]
    assert "<image 2>" in contexts[0] and "<image 1>" in contexts[0]
    pad, start = "<|vision_start|><|image_pad|>", "<|vision_start|>"
    interleaved = Qwen3VL(pretrained=str(tiny_checkpoint), device="cpu", interleave_visuals=True)
    batch = interleaved.engine.prepare(contexts[:1], visuals[:1], [0], ["local_mmmu_val"])
    text = interleaved.tokenizer.decode(batch.inputs["input_ids"][0])
    before, after = text.split("Compare ", 1)[1].split(" with ", 1)
    assert before.startswith(pad) and after.startswith(pad)  # image 2, then image 1, where the question names them
    assert "<image" not in text
    # the image named first (image 2, 64 x 128 px) is the first grid: the grids follow the prompt order
    assert batch.image_grids[0] == [(2, 4), (2, 2)]
    flat = Qwen3VL(pretrained=str(tiny_checkpoint), device="cpu")
    plain = flat.tokenizer.decode(flat.engine.prepare(contexts[:1], visuals[:1], [0], ["t"]).inputs["input_ids"][0])
    assert "<image" not in plain and plain.index(start) < plain.index("Compare")  # default: images first, tags removed


def test_interleaved_mmmu_through_the_cli_with_an_intervention_and_the_log(task_folder, trained, tmp_path):
    output = _run(
        tmp_path, task_folder, trained[0], "qwen3vl_adaptvis", 3, "interleave_visuals=true", tasks=["mmmu_val"]
    )
    results, samples = find_results(output)
    assert "mmmu_acc,none" in results["results"]["local_mmmu_val"]
    records = [r for r in read_records(tmp_path / "log_qwen3vl_adaptvis_bs3") if r["task"] == "local_mmmu_val"]
    assert len(records) == DOCS and all(r["image_grids"] == [[2, 4], [2, 2]] for r in records)
    assert all(r["image_mass_before"] is not None for r in records)  # the intervention ran on the interleaved prompt


def test_a_placeholder_without_an_image_is_refused_with_the_doc_id(tiny_checkpoint):
    wrapper = Qwen3VL(pretrained=str(tiny_checkpoint), device="cpu", interleave_visuals=True)
    image = Image.new("RGB", (64, 64))
    with pytest.raises(ValueError, match=re.escape("task mmmu, doc 17: the prompt has the placeholder '<image 3>'")):
        wrapper.engine.prepare(["See <image 1> and <image 3>."], [[image, image]], [17], ["mmmu"])
    with pytest.raises(ValueError, match="interleave_visuals must be true or false"):
        Qwen3VL(pretrained=str(tiny_checkpoint), device="cpu", interleave_visuals="yes")


def _instances(contexts: list[str], images: list[Image.Image], until: list[str], max_new_tokens: int):
    kwargs = {"max_new_tokens": max_new_tokens, "temperature": 0, "until": until}
    return [
        Instance(
            request_type="generate_until",
            arguments=(context, dict(kwargs), lambda doc: doc["images"], index, "stops", "test"),
            idx=0,
            metadata={"task": "stops", "doc_id": index, "repeats": 1},
        )
        for index, context in enumerate(contexts)
    ], {"stops": {"test": [{"images": [image]} for image in images]}}


def test_stop_strings_end_generation_per_sequence(tiny_checkpoint, tmp_path):
    rng = np.random.default_rng(1)
    images = [_image(rng, 64, 64), _image(rng, 64, 96)]
    contexts = ["Describe the first picture.", "Describe the second picture, please."]
    settings_tokens = 24
    model = Qwen3VLAdaptVis(pretrained=str(tiny_checkpoint), device="cpu", batch_size=2, attention_log=str(tmp_path))
    requests, task_dict = _instances(contexts, images, ["<never>"], settings_tokens)
    model.task_dict = task_dict
    free = model.generate_until(requests)
    free_tokens = {r["doc_id"]: r["generated_tokens"] for r in read_records(tmp_path)}
    assert free_tokens == {0: settings_tokens, 1: settings_tokens}  # a random model never ends its turn
    # a stop string that the first answer provokes after its first character, and the second answer never contains
    stop = next(
        ch
        for i, ch in enumerate(free[0])
        if i >= 1 and not ch.isspace() and ch != "\ufffd" and ch not in free[1] and ch not in free[0][:i]
    )
    (tmp_path / "records.rank0.jsonl").unlink()
    requests, _ = _instances(contexts, images, [stop], settings_tokens)
    stopped = model.generate_until(requests)
    tokens = {r["doc_id"]: r["generated_tokens"] for r in read_records(tmp_path)}
    assert stopped[0] == free[0].split(stop)[0]  # the same answer, cut at the stop string
    assert tokens[0] < settings_tokens  # ... and generation stopped there
    assert stopped[1] == free[1] and tokens[1] == settings_tokens  # the other sequence of the batch went on
