"""lmms-eval's installed benchmarks on small local data, and a tiny model that answers them.

A task here is a test-time YAML that ``include``s the installed task file unchanged and only renames the task and
points it at a parquet file written by the test, with exactly the columns the task's ``utils.py`` reads (the way a
user runs a built-in task on local data). Never a copy of lmms-eval's task code.

:func:`train_answerer` fine-tunes the tiny Qwen3-VL on the prompts those tasks write (their own ``doc_to_text`` and
``doc_to_visual``) so that it answers each in the task's vocabulary, by the colour that dominates the image: red is
yes / A / "red", blue is no / B / "blue". On images near half red its answers are unsure, so an intervention with
exaggerated settings changes some of them: comparisons between runs are not degenerate.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import lmms_eval
import numpy as np
import torch
from PIL import Image

TASKS_DIR = Path(lmms_eval.__file__).parent / "tasks"
INSTALLED = {
    "pope": "pope/pope.yaml",
    "cv_bench_2d": "cv_bench/cv_bench_2d.yaml",
    "muirbench": "muirbench/muirbench.yaml",
    "mmmu_val": "mmmu/mmmu_val.yaml",
    "mme": "mme/mme.yaml",
    "textvqa_val": "textvqa/textvqa_val.yaml",
}
SPLITS = {
    "pope": "test",
    "cv_bench_2d": "test",
    "muirbench": "test",
    "mmmu_val": "validation",
    "mme": "test",
    "textvqa_val": "validation",
}
COLOUR_TASKS = ("pope", "cv_bench_2d", "mmmu_val", "mme", "textvqa_val")
RED, BLUE = (220, 30, 30), (30, 30, 220)
BLOCKS = 4  # an image is BLOCKS x BLOCKS squares, each red or blue
BORDERLINE = (6, 7, 9, 10)  # red squares of an image whose majority colour is hard to tell
MME_CATEGORIES = ("color", "position", "commonsense_reasoning")  # two perception categories, one cognition


def write_local_task(folder: Path, task: str, rows: list[dict], features: dict, name: str | None = None) -> str:
    """``local_<task>`` (or ``name``): the installed task on ``rows``; returns the task name."""
    name = name or f"local_{task}"
    parquet = folder / f"{name}.parquet"
    datasets.Dataset.from_list(rows, features=datasets.Features(features)).to_parquet(str(parquet))
    config = {
        "include": str(TASKS_DIR / INSTALLED[task]),
        "task": name,
        "dataset_path": "parquet",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {SPLITS[task]: str(parquet)}},
    }
    (folder / f"{name}.yaml").write_text(json.dumps(config, indent=2))  # JSON is YAML
    return name


def colour_image(red_blocks: int, rng: np.random.Generator, side: int = 64) -> Image.Image:
    """``red_blocks`` of the BLOCKS x BLOCKS squares red (at random places), the others blue."""
    cells = np.zeros(BLOCKS * BLOCKS, dtype=bool)
    cells[rng.choice(BLOCKS * BLOCKS, size=red_blocks, replace=False)] = True
    grid = np.where(cells.reshape(BLOCKS, BLOCKS)[..., None], np.array(RED), np.array(BLUE)).astype(np.uint8)
    return Image.fromarray(grid).resize((side, side), Image.NEAREST)


def colour_rows(task: str, red_blocks: list[int], rng: np.random.Generator) -> tuple[list[dict], dict]:
    """One document per entry of ``red_blocks`` (MME: one image per two entries, two questions each): the answer is
    the image's majority colour in the task's vocabulary. TextVQA's ten reference answers mix both colours, so its
    per-document scores are not 0/1."""
    image = datasets.Image()
    string = datasets.Value("string")
    red = [blocks * 2 > BLOCKS * BLOCKS for blocks in red_blocks]
    rows: list[dict] = []
    if task == "pope":
        for i, (blocks, is_red) in enumerate(zip(red_blocks, red)):
            rows.append({"question_id": str(i), "question": "Is the image mostly red?",
                         "answer": "yes" if is_red else "no", "image": colour_image(blocks, rng)})  # fmt: skip
        return rows, {"question_id": string, "question": string, "answer": string, "image": image}
    if task == "cv_bench_2d":
        for i, (blocks, is_red) in enumerate(zip(red_blocks, red)):
            rows.append({"idx": i, "type": "2D", "task": "Count", "source": "COCO",
                         "prompt": "Which colour covers most of the image?", "choices": ["red", "blue"],
                         "answer": "(A)" if is_red else "(B)", "image": colour_image(blocks, rng)})  # fmt: skip
        features = {"idx": datasets.Value("int64"), "type": string, "task": string, "source": string,
                    "prompt": string, "choices": datasets.Sequence(string), "answer": string, "image": image}  # fmt: skip
        return rows, features
    if task == "mmmu_val":
        for i, (blocks, is_red) in enumerate(zip(red_blocks, red)):
            rows.append({"id": f"validation_Art_{i + 1}", "question": "Which colour covers most of <image 1>?",
                         "options": "['red', 'blue']", "question_type": "multiple-choice",
                         "answer": "A" if is_red else "B", "image_1": colour_image(blocks, rng)})  # fmt: skip
        features = {"id": string, "question": string, "options": string, "question_type": string, "answer": string,
                    "image_1": image}  # fmt: skip
        return rows, features
    if task == "mme":
        for i in range(0, len(red_blocks) - 1, 2):
            picture = colour_image(red_blocks[i], rng)
            category = MME_CATEGORIES[(i // 2) % len(MME_CATEGORIES)]
            for question in ("Is the image mostly red?", "Is red the main colour here?"):
                rows.append({"question_id": f"{category}/{i // 2}.png", "question": f"{question} Please answer yes or no.",
                             "answer": "Yes" if red[i] else "No", "category": category, "image": picture})  # fmt: skip
        return rows, {"question_id": string, "question": string, "answer": string, "category": string, "image": image}
    if task == "textvqa_val":
        for i, (blocks, is_red) in enumerate(zip(red_blocks, red)):
            agreeing = 10 - (i % 4)  # 10, 9, 8 or 7 of the ten annotators name the majority colour
            majority, minority = ("red", "blue") if is_red else ("blue", "red")
            rows.append({"question_id": i, "question": "what colour covers most of the image?",
                         "answers": [majority] * agreeing + [minority] * (10 - agreeing),
                         "image": colour_image(blocks, rng)})  # fmt: skip
        return rows, {"question_id": datasets.Value("int64"), "question": string, "answers": datasets.Sequence(string),
                      "image": image}  # fmt: skip
    raise ValueError(f"no colour rows for {task}")


def colour_answer(task: str, is_red: bool) -> str:
    """What the trained model is taught to say."""
    if task in ("pope", "mme"):
        return "yes" if is_red else "no"
    if task in ("cv_bench_2d", "mmmu_val"):
        return "A" if is_red else "B"
    return "red" if is_red else "blue"


def write_colour_tasks(folder: Path, docs: int, seed: int, borderline: bool) -> dict[str, str]:
    """Every colour task on ``docs`` documents: near half red when ``borderline`` (6-10 of 16 squares, never 8),
    else clearly one colour (0-4 or 12-16). Returns task -> local task name."""
    rng = np.random.default_rng(seed)
    choices = list(BORDERLINE) if borderline else [0, 1, 2, 3, 4, 12, 13, 14, 15, 16]
    names = {}
    for task in COLOUR_TASKS:
        blocks = [int(b) for b in rng.choice(choices, size=docs)]
        if task == "mme":  # two questions per image
            blocks = [b for b in blocks[: docs // 2] for _ in range(2)]
        rows, features = colour_rows(task, blocks, rng)
        names[task] = write_local_task(folder, task, rows, features)
    return names


def train_answerer(root: Path, steps: int = 300, learning_rate: float = 3e-3) -> Path:
    """The tiny Qwen3-VL (words tokenizer) taught to answer the colour tasks; returns its folder.

    Training rows are the tasks' own prompts and images (``doc_to_text``/``doc_to_visual`` of local tasks on their
    own parquet files), rendered as the models render them (images first, one user turn) with the answer turn
    after; the loss is on the answer and its end-of-turn token. Deterministic: fixed seeds, one thread.
    """
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same weights whatever OMP_NUM_THREADS the suite runs with
    try:
        return _train(root, steps, learning_rate)
    finally:
        torch.set_num_threads(threads)


def _train(root: Path, steps: int, learning_rate: float) -> Path:
    from lmms_eval.tasks import TaskManager, get_task_dict
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from families.turns import images_first, render_user_turn
    from testbed.tiny import build_tiny_checkpoint

    folder = root / "train_tasks"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    examples = []  # (context, images, answer)
    for task in COLOUR_TASKS:
        blocks = [int(b) for b in rng.choice([b for b in range(BLOCKS * BLOCKS + 1) if b != 8], size=48)]
        if task == "mme":
            blocks = [b for b in blocks[:24] for _ in range(2)]
        rows, features = colour_rows(task, blocks, rng)
        name = write_local_task(folder, task, rows, features, name=f"train_{task}")
        loaded = get_task_dict([name], TaskManager(include_path=str(folder)))[name]
        for doc, red_blocks in zip(loaded.eval_docs, blocks):
            # near half red the taught answer is a coin flip: the model stays unsure there, as a real one on a hard
            # document, and a change of its attention changes some of those answers
            red = bool(rng.random() < 0.5) if red_blocks in BORDERLINE else red_blocks > 8
            examples.append((loaded.doc_to_text(doc), loaded.doc_to_visual(doc), colour_answer(task, red)))
    checkpoint = build_tiny_checkpoint(root / "tiny", num_layers=4, seed=0, tokenizer="words")
    processor = AutoProcessor.from_pretrained(checkpoint)
    model = AutoModelForImageTextToText.from_pretrained(checkpoint, dtype=torch.float32)
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    tokenizer = processor.tokenizer
    order = np.random.default_rng(2)
    for _ in range(steps):
        batch = [examples[i] for i in order.choice(len(examples), size=8, replace=False)]
        prompts, texts, images = [], [], []
        for context, visuals, answer in batch:
            turn = images_first(context, [v.convert("RGB") for v in visuals])
            prompt = render_user_turn(processor, turn.content, None)
            prompts.append(prompt)
            texts.append(prompt + answer + tokenizer.eos_token)
            images.extend(turn.images)
        inputs = processor(text=texts, images=images, padding=True, padding_side="right", return_tensors="pt")
        labels = torch.full_like(inputs["input_ids"], -100)
        for row, (prompt, text) in enumerate(zip(prompts, texts)):  # the answer's tokens, counted from the end
            answer_tokens = len(tokenizer(text)["input_ids"]) - len(tokenizer(prompt)["input_ids"])
            end = int(inputs["attention_mask"][row].sum())
            labels[row, end - answer_tokens : end] = inputs["input_ids"][row, end - answer_tokens : end]
        loss = model(**inputs, labels=labels).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    out = root / "answerer"
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
