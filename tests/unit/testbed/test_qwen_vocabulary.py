"""``python -m testbed.tiny --tokenizer qwen``: the real Qwen vocabulary, the released chat template, the released
preprocessor settings, and what our prompt, answer parser and fine-tuning label mask make of them."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest
from PIL import Image
from transformers import AutoConfig, AutoProcessor

from finetune.collate import IGNORE_INDEX, Collator, prompt_text, training_text
from finetune.data import Example
from tests.support.commands import run_module
from tests.support.data import evaluation_prompt
from vsr_tasks.prompt import build_prompt
from vsr_tasks.scoring import parse_answer

# Public facts about the Qwen tokenizer (Qwen2 / Qwen2.5 / Qwen3 / Qwen3-VL share it).
GOLDEN_IDS = {
    "<|im_start|>system<|im_end|>": [151644, 8948, 151645],
    "<|vision_start|><|image_pad|><|vision_end|>": [151652, 151655, 151653],
    "()[]{}<>": [368, 1294, 6257, 21122],
    "123 4567 0.5e-3 -42": [16, 17, 18, 220, 19, 20, 21, 22, 220, 15, 13, 20, 68, 12, 18, 481, 19, 17],
    "snake_case camelCase kebab-case dot.case": [72139, 19096, 49152, 4207, 1962, 47722, 38485, 12756, 68687],
}
SPECIAL_IDS = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<|object_ref_start|>": 151646,
    "<|box_start|>": 151648,
    "<|vision_start|>": 151652,
    "<|vision_end|>": 151653,
    "<|vision_pad|>": 151654,
    "<|image_pad|>": 151655,
    "<|video_pad|>": 151656,
    "<tool_call>": 151657,
    "<|fim_prefix|>": 151659,
    "<|file_sep|>": 151664,
    "<think>": 151667,
    "</think>": 151668,
}
IMAGE = {"type": "image"}
VISION = "<|vision_start|><|image_pad|><|vision_end|>"
VIDEO = "<|vision_start|><|video_pad|><|vision_end|>"


def text(value: str) -> dict:
    return {"type": "text", "text": value}


# (name, messages, apply_chat_template keyword arguments, what the released Qwen3-VL instruct template renders)
TEMPLATE_SHAPES = [
    (
        "one image, generation prompt",
        [{"role": "user", "content": [IMAGE, text("Describe.")]}],
        {"add_generation_prompt": True},
        f"<|im_start|>user\n{VISION}Describe.<|im_end|>\n<|im_start|>assistant\n",
    ),
    (
        "two images",
        [{"role": "user", "content": [IMAGE, IMAGE, text("Compare.")]}],
        {"add_generation_prompt": True},
        f"<|im_start|>user\n{VISION}{VISION}Compare.<|im_end|>\n<|im_start|>assistant\n",
    ),
    (
        "images between text parts",
        [{"role": "user", "content": [text("A: "), IMAGE, text(" B: "), IMAGE, text(" Same?")]}],
        {"add_generation_prompt": True},
        f"<|im_start|>user\nA: {VISION} B: {VISION} Same?<|im_end|>\n<|im_start|>assistant\n",
    ),
    (
        "text only, string content",
        [{"role": "user", "content": "Hello"}],
        {"add_generation_prompt": True},
        "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
    ),
    (
        "text only, parts",
        [{"role": "user", "content": [text("Hello")]}],
        {"add_generation_prompt": True},
        "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
    ),
    (
        "system turn, string",
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [IMAGE, text("Q")]}],
        {"add_generation_prompt": True},
        f"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n{VISION}Q<|im_end|>\n<|im_start|>assistant\n",
    ),
    (
        "system turn, parts",
        [{"role": "system", "content": [text("Be "), text("brief.")]}, {"role": "user", "content": "Q"}],
        {"add_generation_prompt": True},
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n",
    ),
    (
        "assistant answer, no generation prompt",
        [{"role": "user", "content": [IMAGE, text("Q")]}, {"role": "assistant", "content": [text("True")]}],
        {"add_generation_prompt": False},
        f"<|im_start|>user\n{VISION}Q<|im_end|>\n<|im_start|>assistant\nTrue<|im_end|>\n",
    ),
    (
        "multi-turn",
        [
            {"role": "user", "content": [IMAGE, text("Q1")]},
            {"role": "assistant", "content": "A1"},
            {"role": "user", "content": [text("Q2")]},
        ],
        {"add_generation_prompt": True},
        f"<|im_start|>user\n{VISION}Q1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
        "<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n",
    ),
    (
        "numbered pictures and a video across turns (add_vision_id)",
        [
            {"role": "user", "content": [IMAGE, text("first")]},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "video"}, IMAGE, text("then")]},
        ],
        {"add_generation_prompt": True, "add_vision_id": True},
        f"<|im_start|>user\nPicture 1: {VISION}first<|im_end|>\n<|im_start|>assistant\nok<|im_end|>\n"
        f"<|im_start|>user\nVideo 1: {VIDEO}Picture 2: {VISION}then<|im_end|>\n<|im_start|>assistant\n",
    ),
]


@pytest.fixture(scope="module")
def processor(qwen_checkpoint):
    return AutoProcessor.from_pretrained(qwen_checkpoint)


def test_golden_token_ids(processor, qwen_checkpoint):
    tokenizer = processor.tokenizer
    for value, ids in GOLDEN_IDS.items():
        assert tokenizer(value, add_special_tokens=False)["input_ids"] == ids, value
        assert tokenizer.decode(ids) == value
    for token, token_id in SPECIAL_IDS.items():
        assert tokenizer.convert_tokens_to_ids(token) == token_id, token
    assert len(tokenizer) == 151669
    assert AutoConfig.from_pretrained(qwen_checkpoint).text_config.vocab_size == 151936


@pytest.mark.parametrize("answer, token_id, label", [("True", 2514, 1), ("False", 4049, 0)])
def test_answers_after_the_assistant_header(processor, answer, token_id, label):
    tokenizer = processor.tokenizer
    ids = tokenizer(f"<|im_start|>assistant\n{answer}<|im_end|>", add_special_tokens=False)["input_ids"]
    assert ids == [151644, 77091, 198, token_id, 151645]  # assistant, "\n", one token for the answer, <|im_end|>
    assert parse_answer(tokenizer.decode([token_id])) is bool(label)
    generated = tokenizer.decode([token_id, 151645], skip_special_tokens=True)
    assert generated == answer and parse_answer(generated) is bool(label)


@pytest.mark.parametrize("name, messages, kwargs, expected", TEMPLATE_SHAPES, ids=[s[0] for s in TEMPLATE_SHAPES])
def test_chat_template_renders_what_the_released_one_renders(processor, name, messages, kwargs, expected):
    assert processor.apply_chat_template(messages, tokenize=False, **kwargs) == expected


def test_released_preprocessor_settings(processor):
    image = processor.image_processor
    assert (image.patch_size, image.merge_size, image.temporal_patch_size) == (16, 2, 2)
    assert list(image.image_mean) == [0.5, 0.5, 0.5] and list(image.image_std) == [0.5, 0.5, 0.5]
    assert dict(image.size) == {"shortest_edge": 65536, "longest_edge": 16777216}
    assert dict(processor.video_processor.size) == {"shortest_edge": 4096, "longest_edge": 25165824}
    small = Image.fromarray(np.zeros((64, 96, 3), dtype=np.uint8))  # below the minimum: scaled up to >= 65,536 px
    grid = processor(text=[VISION], images=[small], return_tensors="pt")["image_grid_thw"][0].tolist()
    assert grid[1] * grid[2] * 16 * 16 >= 65536


def test_evaluation_prompt_and_label_mask_token_by_token(processor, qwen_checkpoint, tmp_path):
    caption = "The cat is left of the dog."
    path = tmp_path / "image.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(path)
    evaluation, evaluation_ids = evaluation_prompt(qwen_checkpoint, caption, path)
    assert evaluation == f"<|im_start|>user\n{VISION}{build_prompt(caption)}<|im_end|>\n<|im_start|>assistant\n"
    assert prompt_text(processor, caption) == evaluation
    assert training_text(processor, caption, 1) == evaluation + "True<|im_end|>\n"
    batch = Collator(processor)(
        [(Example(0, path, caption, 1), 1.0), (Example(1, path, "The cup is near the bus.", 0), 1.0)]
    )
    for row, answer_id in ((0, 2514), (1, 4049)):
        ids = batch["input_ids"][row, : int(batch["attention_mask"][row].sum())]
        if row == 0:  # the training sequence starts with exactly the ids the evaluation's batch feeds the model
            assert ids[: evaluation_ids.shape[0]].tolist() == evaluation_ids.tolist()
        labels = batch["labels"][row, : len(ids)]
        # ... <|im_start|> assistant \n ANSWER <|im_end|> \n : only ANSWER and <|im_end|> are trained on
        assert ids[-6:].tolist() == [151644, 77091, 198, answer_id, 151645, 198]
        assert labels.tolist() == [IGNORE_INDEX] * (len(ids) - 3) + [answer_id, 151645, IGNORE_INDEX]
        assert not bool((labels[ids == 151655] != IGNORE_INDEX).any())  # no image pad is a target
    assert bool((batch["labels"][1, int(batch["attention_mask"][1].sum()) :] == IGNORE_INDEX).all())


def test_the_command_line_builds_it(tmp_path, qwen_checkpoint):
    out = tmp_path / "qwen"
    completed = run_module("testbed.tiny", [str(out), "--layers", "2", "--tokenizer", "qwen"], dict(os.environ))
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert json.loads((out / "tiny_recipe.json").read_text()) == {"num_layers": 2, "seed": 0, "tokenizer": "qwen"}
    assert (
        AutoProcessor.from_pretrained(out).tokenizer.get_vocab()
        == AutoProcessor.from_pretrained(qwen_checkpoint).tokenizer.get_vocab()
    )


def test_without_the_rank_file_the_build_names_the_pip_command(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "dashscope" else real(name, *a))
    completed = run_module("testbed.tiny", [str(tmp_path / "x"), "--tokenizer", "qwen"], dict(os.environ))
    assert completed.returncode != 0
    # the message with the command, not a stack trace, is what the user sees
    assert "pip install dashscope" in completed.stderr and "Traceback" not in completed.stderr
