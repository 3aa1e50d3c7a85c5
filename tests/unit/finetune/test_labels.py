"""finetune without training: the label mask on a real processed example, data splits, the plan, input errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from transformers import AutoProcessor

from finetune.args import ArgumentError, accumulation_steps, parse_args
from finetune.collate import IGNORE_INDEX, Collator, prompt_text, training_text
from finetune.data import Example, load_splits
from finetune.plan import Plan, eval_batches
from finetune.tracking import AIM_MISSING
from tests.support.data import evaluation_prompt
from vsr_tasks.data import VSRDataError
from vsr_tasks.prompt import build_prompt


@pytest.fixture(scope="module")
def processor(tiny_checkpoint):
    return AutoProcessor.from_pretrained(tiny_checkpoint)


@pytest.fixture(scope="module")
def image_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(path)
    return path


def test_training_text_starts_with_exactly_the_evaluation_prompt(processor, tiny_checkpoint, image_file):
    caption = "The cat is left of the dog."
    evaluation, evaluation_ids = evaluation_prompt(tiny_checkpoint, caption, image_file)
    assert prompt_text(processor, caption) == evaluation
    assert training_text(processor, caption, 1) == evaluation + "True<|im_end|>\n"
    assert training_text(processor, caption, 0) == evaluation + "False<|im_end|>\n"
    # token by token: the training sequence starts with exactly the ids the evaluation's batch feeds the model
    example = Example(index=0, image=image_file, caption=caption, label=1)
    batch = Collator(processor)([(example, 1.0)])
    assert batch["input_ids"][0, : evaluation_ids.shape[0]].tolist() == evaluation_ids.tolist()


@pytest.mark.parametrize("label,answer", [(1, "True"), (0, "False")])
def test_labels_cover_exactly_the_answer_and_end_token_of_a_processed_example(processor, image_file, label, answer):
    short = Example(index=7, image=image_file, caption="The cat is on the mat.", label=label)
    long = Example(index=9, image=image_file, caption="The umbrella is far away from the parking meter.", label=1)
    batch = Collator(processor)([(short, 1.0), (long, 0.0)])
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    im_end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    # 96 x 128 px -> 6 x 8 patches of 16 -> 3 x 4 merged tokens: the text template has ONE pad, the model sees 12
    assert int((ids[0] == image_pad).sum()) == 12
    assert batch["image_grid_thw"].tolist() == [[1, 6, 8], [1, 6, 8]]
    # byte-level tokenizer: one token per character; each sequence ends "...assistant\n{answer}<|im_end|>\n"
    length = int(mask[0].sum())
    expected = list(range(length - 2 - len(answer), length - 1))  # answer bytes + <|im_end|>, not the final "\n"
    assert (labels[0] != IGNORE_INDEX).nonzero().flatten().tolist() == expected
    assert labels[0, expected].tolist() == ids[0, expected].tolist()
    assert int(labels[0, expected[-1]]) == im_end
    assert processor.tokenizer.decode(labels[0, expected[:-1]]) == answer
    # a text-only count of the prompt (one <|image_pad|>) would start 11 tokens too early, inside the prompt
    text_only = len(processor.tokenizer(prompt_text(processor, short.caption))["input_ids"])
    assert expected[0] == text_only + 11
    assert not bool(((labels[0] != IGNORE_INDEX) & (ids[0] == image_pad)).any())
    # the longer, right-padded second row: its own answer, padding ignored
    length_long = int(mask[1].sum())
    assert (labels[1] != IGNORE_INDEX).nonzero().flatten().tolist() == list(range(length_long - 6, length_long - 1))
    assert (labels[0, length:] == IGNORE_INDEX).all()
    assert batch["weights"].tolist() == [1.0, 0.0] and batch["indices"].tolist() == [7, 9]


def _vsr_folder(root: Path, n: int, missing: set[int] = frozenset()) -> Path:
    (root / "splits" / "random").mkdir(parents=True)
    (root / "images").mkdir()
    rows = []
    for i in range(n):
        rows.append({"image": f"{i:03d}.png", "caption": f"caption {i}", "label": i % 2, "relation": "near"})
        if i not in missing:
            Image.new("RGB", (32, 32)).save(root / "images" / f"{i:03d}.png")
    (root / "splits" / "random" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_held_out_slice_comes_from_train_with_a_fixed_seed(tmp_path):
    root = _vsr_folder(tmp_path / "data", 40)
    first = load_splits(root, "random", eval_fraction=0.1, eval_split_seed=0)
    again = load_splits(root, "random", eval_fraction=0.1, eval_split_seed=0)
    held_out = [ex.index for ex in first.held_out]
    assert len(held_out) == 4 and len(first.train) == 36
    assert held_out == [ex.index for ex in again.held_out]
    assert set(held_out).isdisjoint(ex.index for ex in first.train)
    assert sorted(held_out + [ex.index for ex in first.train]) == list(range(40))
    assert first.train[0].image == root / "images" / f"{first.train[0].index:03d}.png"
    limited = load_splits(root, "random", eval_fraction=0.1, max_train_samples=5, max_eval_samples=2)
    assert [ex.index for ex in limited.train] == [ex.index for ex in first.train[:5]]
    assert [ex.index for ex in limited.held_out] == held_out[:2]


def test_missing_images_fail_naming_the_file_or_are_skipped_and_counted(tmp_path):
    root = _vsr_folder(tmp_path / "data", 10, missing={3, 8})
    with pytest.raises(VSRDataError, match=r"2 image file\(s\) missing.*003\.png.*--skip_missing_images"):
        load_splits(root, "random", eval_fraction=0.0)
    splits = load_splits(root, "random", eval_fraction=0.0, skip_missing_images=True)
    assert len(splits.train) == 8 and [Path(p).name for p in splits.missing_images] == ["003.png", "008.png"]


def test_plan_is_deterministic_and_splits_each_step_between_processes():
    plans = [Plan(n_train=10, per_device_batch_size=2, accumulation_steps=1, num_processes=2, seed=3)] * 2
    assert plans[0].effective_batch == 4 and plans[0].steps_per_epoch == 3
    for step in range(6):
        batch = plans[0].global_batch(step)
        rank0, rank1 = (plans[0].micro_batches(step, rank) for rank in (0, 1))
        real = [p for mb in rank0 + rank1 for p, w in mb if w > 0]
        assert sorted(real) == sorted(batch)  # disjoint and complete
    # epoch 0 covers every row once; the short last batch (2 rows) leaves rank 1 a zero-weight filler
    assert sorted(sum((plans[0].global_batch(s) for s in range(3)), [])) == list(range(10))
    assert len(plans[0].global_batch(2)) == 2
    assert [w for _, w in plans[0].micro_batches(2, 1)[0]] == [0.0]
    # the same effective batch on one process visits the same rows in the same steps
    single = Plan(n_train=10, per_device_batch_size=2, accumulation_steps=2, num_processes=1, seed=3)
    assert [single.global_batch(s) for s in range(6)] == [plans[0].global_batch(s) for s in range(6)]
    assert eval_batches(5, 2, 1, 2) == [[(1, 1.0), (3, 1.0)], [(0, 0.0)]]
    assert len(eval_batches(5, 2, 0, 2)) == 2


def test_default_accumulation_gives_an_effective_batch_of_64(tmp_path):
    args = parse_args(["--vsr_data_dir", str(tmp_path), "--output_dir", str(tmp_path / "out")])
    assert (args.per_device_batch_size, accumulation_steps(args, 1), accumulation_steps(args, 4)) == (8, 8, 2)
    assert (args.epochs, args.learning_rate, args.warmup_steps, args.weight_decay) == (3, 2e-5, 5, 1e-6)
    assert args.eval_fraction == 0.05


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--eval_fraction", "1.5"], "--eval_fraction must be in"),
        (["--per_device_batch_size", "0"], "--per_device_batch_size must be a positive"),
        (["--use_lora", "--lora_target_modules", " , "], "--lora_target_modules is empty"),
        (["--image_dir", "/nonexistent/images"], "--image_dir /nonexistent/images does not exist"),
        (["--stop_at_accuracy", "1.5"], "--stop_at_accuracy must be in"),
        (["--stop_at_accuracy", "0.9", "--eval_fraction", "0"], "--stop_at_accuracy needs held-out rows"),
    ],
)
def test_bad_flags_are_refused_by_name(tmp_path, extra, message):
    with pytest.raises(ArgumentError, match=message):
        parse_args(["--vsr_data_dir", str(tmp_path), "--output_dir", str(tmp_path / "o"), *extra])


def test_missing_data_dir_and_missing_aim_give_clear_messages(tmp_path, monkeypatch, capsys):
    from finetune.cli import main

    monkeypatch.delenv("VSR_DATA_DIR", raising=False)
    with pytest.raises(ArgumentError, match="--vsr_data_dir is required"):
        parse_args(["--output_dir", str(tmp_path)])
    root = _vsr_folder(tmp_path / "data", 4)
    status = main(["--vsr_data_dir", str(root), "--output_dir", str(tmp_path / "o"), "--log_with_aim"])
    assert status == 2
    assert AIM_MISSING in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # failed before anything was loaded or written


def test_llava_labels_come_from_its_own_template_and_end_with_its_end_token(family_checkpoint, image_file):
    """llava-hf's template leaves the answer turn open ("ASSISTANT: True "): the answer is closed by </s>, the
    token generation stops on, and only " True</s>" is trained on; the 64 expanded <image> tokens are not."""
    processor = AutoProcessor.from_pretrained(family_checkpoint("llava"))
    caption = "The cat is left of the dog."
    prompt = prompt_text(processor, caption)
    assert prompt == f"USER: <image>\n{build_prompt(caption)} ASSISTANT:"
    assert training_text(processor, caption, 1) == prompt + " True</s>"
    assert training_text(processor, caption, 0) == prompt + " False</s>"
    batch = Collator(processor)([(Example(0, image_file, caption, 1), 1.0), (Example(1, image_file, "A cup.", 0), 1.0)])
    tokenizer = processor.tokenizer
    image, end = tokenizer.convert_tokens_to_ids("<image>"), tokenizer.eos_token_id
    for row, answer in ((0, " True"), (1, " False")):
        length = int(batch["attention_mask"][row].sum())
        ids, labels = batch["input_ids"][row, :length], batch["labels"][row, :length]
        assert int(ids[0]) == tokenizer.bos_token_id and int((ids == image).sum()) == 64  # 8 x 8 patches of 14 px
        trained = (labels != IGNORE_INDEX).nonzero().flatten().tolist()
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        assert trained == list(range(length - len(answer_ids) - 1, length))  # the answer and </s>, at the end
        assert labels[trained].tolist() == answer_ids + [end]
    assert (batch["labels"][0, int(batch["attention_mask"][0].sum()) :] == IGNORE_INDEX).all()


def test_gemma3_labels_come_from_its_own_template_with_one_bos(family_checkpoint, image_file):
    """Gemma-3's template closes the answer turn ("<start_of_turn>model\\nTrue<end_of_turn>\\n"): the answer and
    <end_of_turn>, the token generation stops on, are trained on, the turn's newline is not; the template's <bos> is
    dropped because the tokenizer prepends its own, so each row starts with exactly one."""
    processor = AutoProcessor.from_pretrained(family_checkpoint("gemma3"))
    caption = "The cat is left of the dog."
    prompt = prompt_text(processor, caption)
    assert (
        prompt == f"<start_of_turn>user\n<start_of_image>{build_prompt(caption)}<end_of_turn>\n<start_of_turn>model\n"
    )
    assert training_text(processor, caption, 1) == prompt + "True<end_of_turn>\n"
    batch = Collator(processor)([(Example(0, image_file, caption, 1), 1.0), (Example(1, image_file, "A cup.", 0), 1.0)])
    tokenizer = processor.tokenizer
    image, end = tokenizer.convert_tokens_to_ids("<image_soft_token>"), tokenizer.eos_token_id
    for row, answer in ((0, "True"), (1, "False")):
        length = int(batch["attention_mask"][row].sum())
        ids, labels = batch["input_ids"][row, :length], batch["labels"][row, :length]
        assert int(ids[0]) == tokenizer.bos_token_id and int((ids == tokenizer.bos_token_id).sum()) == 1
        assert int((ids == image).sum()) == 64  # 8 x 8 pooled tokens
        trained = (labels != IGNORE_INDEX).nonzero().flatten().tolist()
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        assert trained == list(range(length - len(answer_ids) - 2, length - 1))  # answer and <end_of_turn>, not "\n"
        assert labels[trained].tolist() == answer_ids + [end]


def test_llava_next_mistral_labels_end_with_the_end_token_and_not_the_space_after_it(
    family_checkpoint, image_file, tmp_path
):
    """LLaVA-NeXT's Mistral template closes the answer turn itself (" True</s> "): the answer and </s> are trained
    on, the space the template writes after </s> is not."""
    import shutil

    from tests.support.templates import MISTRAL

    folder = shutil.copytree(family_checkpoint("llava_next"), tmp_path / "mistral")
    (folder / "chat_template.jinja").write_text(MISTRAL)
    processor = AutoProcessor.from_pretrained(folder)
    caption = "The cat is left of the dog."
    prompt = prompt_text(processor, caption)
    assert prompt == f"[INST] <image>\n{build_prompt(caption)} [/INST]"
    assert training_text(processor, caption, 1) == prompt + " True</s> "
    batch = Collator(processor)([(Example(0, image_file, caption, 1), 1.0), (Example(1, image_file, "A cup.", 0), 1.0)])
    tokenizer = processor.tokenizer
    for row, answer in ((0, " True"), (1, " False")):
        length = int(batch["attention_mask"][row].sum())
        ids, labels = batch["input_ids"][row, :length], batch["labels"][row, :length]
        assert int(ids[0]) == tokenizer.bos_token_id and int((ids == tokenizer.bos_token_id).sum()) == 1
        trained = (labels != IGNORE_INDEX).nonzero().flatten().tolist()
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        assert trained == list(range(length - len(answer_ids) - 2, length - 1))  # the answer and </s>, not " "
        assert labels[trained].tolist() == answer_ids + [tokenizer.eos_token_id]
