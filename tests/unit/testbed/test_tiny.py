"""The tiny checkpoint builder's two tokenizers: both round-trip any text and load through from_pretrained."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

from testbed.vocabulary import SPECIAL_TOKENS, VOCAB_SIZE, build_tokenizer
from tests.support.commands import run_module
from tests.support.environment import REPO_ROOT
from vsr_tasks.prompt import build_prompt

PROMPT = build_prompt("The cat is left of the dog.")


@pytest.mark.parametrize("kind", ["bytes", "words"])
def test_tokenizers_round_trip_any_text_and_fit_the_vocabulary(kind):
    tokenizer = build_tokenizer(kind)
    text = PROMPT + " Ünïcode ✓ and words never seen: zebra"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    assert len(tokenizer) <= VOCAB_SIZE
    for token in SPECIAL_TOKENS:
        assert tokenizer.convert_tokens_to_ids(token) < VOCAB_SIZE


def test_word_tokenizer_makes_the_prompt_words_single_tokens_deterministically():
    words, again = build_tokenizer("words"), build_tokenizer("words")
    assert words.get_vocab() == again.get_vocab()
    tokens = words.tokenize(PROMPT)
    assert len(build_tokenizer("bytes").tokenize(PROMPT)) == len(PROMPT.encode())  # one token per byte
    assert len(tokens) == 36  # every word of the prompt and caption is one token
    assert {"Ġcat", "Ġdog", "Ġleft", "Ġstatement", "ĠTrue", "ĠFalse"} <= set(tokens)
    assert words.tokenize("True") == ["True"] and words.tokenize("False") == ["False"]


def test_cli_builds_a_word_tokenizer_checkpoint_that_loads(tmp_path):
    out = tmp_path / "tiny_words"
    command = [sys.executable, "-m", "testbed.tiny", str(out), "--layers", "2", "--tokenizer", "words"]
    subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True, timeout=120)
    assert json.loads((out / "tiny_recipe.json").read_text()) == {"num_layers": 2, "seed": 0, "tokenizer": "words"}
    processor = AutoProcessor.from_pretrained(out)
    model = Qwen3VLForConditionalGeneration.from_pretrained(out)
    assert processor.tokenizer.get_vocab() == build_tokenizer("words").get_vocab()
    assert model.config.text_config.vocab_size == VOCAB_SIZE
    ids = processor.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    assert model(input_ids=ids).logits.shape == (1, ids.shape[1], VOCAB_SIZE)


def test_unknown_tokenizer_is_refused_by_name():
    with pytest.raises(ValueError, match="tokenizer must be one of bytes, words, qwen, got 'bpe'"):
        build_tokenizer("bpe")


def test_vision_position_std_redraws_only_the_vision_position_embedding(tmp_path):
    from safetensors.torch import load_file

    from testbed.tiny import build_tiny_checkpoint

    plain = load_file(str(build_tiny_checkpoint(tmp_path / "plain", seed=3) / "model.safetensors"))
    wide = build_tiny_checkpoint(tmp_path / "wide", seed=3, vision_position_std=2.0)
    redrawn = load_file(str(wide / "model.safetensors"))
    name = "model.visual.pos_embed.weight"
    assert redrawn.keys() == plain.keys()
    assert [key for key in plain if not torch.equal(plain[key], redrawn[key])] == [name]
    assert abs(float(redrawn[name].std()) - 2.0) < 0.1 and float(plain[name].std()) < 0.05
    assert json.loads((wide / "tiny_recipe.json").read_text())["vision_position_std"] == 2.0
    Qwen3VLForConditionalGeneration.from_pretrained(wide)  # loads as any checkpoint
    refused = run_module("testbed.tiny", [str(tmp_path / "bad"), "--vision_position_std", "0"], dict(os.environ))
    assert refused.returncode == 2 and "--vision_position_std must be positive" in refused.stderr


def test_a_family_record_whose_testbed_module_lacks_a_builder_is_refused():
    """``testbed.tiny`` checks, on import, every record's module: ``build``, and ``build_wide`` for wide shapes."""
    import dataclasses

    from families import FAMILIES
    from testbed.tiny import _testbed_of

    moe = FAMILIES["qwen3_vl_moe"]
    assert _testbed_of(moe).__name__ == "testbed.tiny_qwen3_moe"
    with pytest.raises(ImportError, match=r"^qwen3_vl_moe: its testbed module testbed\.tiny_qwen3_moe has no "
                       r"build_wide \(its benchmark shapes 7b-wide are built by build_wide\)$"):  # fmt: skip
        _testbed_of(dataclasses.replace(moe, benchmark_shapes=("tiny", "7b-wide")))
    with pytest.raises(ImportError, match=r"^qwen3_vl_moe: its testbed module 'testbed\.tiny_nothing' does not exist$"):
        _testbed_of(dataclasses.replace(moe, testbed="testbed.tiny_nothing"))
    with pytest.raises(ImportError, match=r"its testbed module testbed\.vocabulary has no build or build_wide"):
        _testbed_of(dataclasses.replace(moe, testbed="testbed.vocabulary", benchmark_shapes=("tiny", "7b-wide")))
