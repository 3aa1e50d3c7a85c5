"""Gemma-3's own structure: the bidirectional image block and the sliding windows leave the last row's invariant
intact, the prompt carries one ``<bos>``, and what the family cannot run is refused before any weight is loaded.

The methods themselves run through every family-parametrised test (neutral == baseline, shared prefix == whole
prompt, each method == the eager reference); these tests show that the tiny Gemma-3 really exercises what differs.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import AttentionInterface, AutoModelForImageTextToText
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from plugin.registered import VLMVEA as VEAModel
from plugin.registered import VLMBaseline as VLM
from testbed.tiny_gemma3 import SLIDING_WINDOW
from tests.support.reference import prepare

RECORDER = "vsr_test_gemma3_mask_recorder"


@pytest.fixture(scope="module")
def checkpoint(family_checkpoint):
    return family_checkpoint("gemma3")


class MaskRecorder:
    """An eager attention that keeps each layer's boolean mask ``[B, 1, N, N]`` of the prefill."""

    def __init__(self) -> None:
        self.masks: dict[int, torch.Tensor] = {}

    def __call__(self, module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        groups = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
        visible = attention_mask[..., : key.shape[2]].bool()
        self.masks[module.layer_idx] = visible.clone()
        scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
        weights = torch.softmax(scores.masked_fill(~visible, torch.finfo(scores.dtype).min), dim=-1)
        return torch.matmul(weights, value).transpose(1, 2).contiguous(), None


def test_the_window_and_the_image_block_bind_and_no_earlier_position_sees_the_last(checkpoint):
    recorder = MaskRecorder()
    AttentionInterface.register(RECORDER, recorder)
    AttentionMaskInterface.register(RECORDER, sdpa_mask)
    model = AutoModelForImageTextToText.from_pretrained(checkpoint, dtype=torch.float32).eval()
    model.set_attn_implementation({"text_config": RECORDER})
    batch = prepare(VLM(pretrained=str(checkpoint), device="cpu", batch_size=2))
    with torch.no_grad():
        model(**batch.inputs)
    layer_types = model.config.text_config.layer_types
    assert set(layer_types) == {"sliding_attention", "full_attention"}
    length = batch.inputs["input_ids"].shape[1]
    for b in range(2):
        real = batch.inputs["attention_mask"][b].bool()
        image = torch.nonzero(batch.image_token_mask[b]).flatten()
        assert int(real.sum()) > SLIDING_WINDOW  # the window is shorter than the prompt: it really cuts
        for layer, kind in enumerate(layer_types):
            mask = recorder.masks[layer][b, 0]
            # the last-row invariant: no position before the last attends to it
            assert not bool(mask[:-1, length - 1].any())
            last_row = mask[-1]
            if kind == "sliding_attention":
                assert int(last_row.sum()) == SLIDING_WINDOW
                assert torch.equal(torch.nonzero(last_row).flatten(), torch.arange(length - SLIDING_WINDOW, length))
            else:
                assert torch.equal(last_row, real)
            # image tokens attend to each other both ways (within the window on a sliding layer)
            first, last = int(image[0]), int(image[-1])
            assert bool(mask[first, last])
            assert not bool(mask[first, last + 1])  # but never to the text after the image


def test_the_prompt_carries_one_bos_token(checkpoint):
    """Gemma's template writes ``<bos>`` and its tokenizer prepends one too; the prompt must carry exactly one."""
    wrapper = VLM(pretrained=str(checkpoint), device="cpu", batch_size=2)
    batch = prepare(wrapper)
    bos = wrapper.engine.tokenizer.bos_token_id
    for row, mask in zip(batch.inputs["input_ids"], batch.inputs["attention_mask"]):
        real = row[mask.bool()].tolist()
        assert real[0] == bos and real.count(bos) == 1


def test_a_text_only_gemma3_is_refused_by_name(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma3_text"}))  # no weights: none loaded
    with pytest.raises(ValueError, match=r"model_type 'gemma3_text': a text-only Gemma-3 .*\(model_type 'gemma3'\)"):
        VLM(pretrained=str(tmp_path))


def test_pan_and_scan_and_pixel_budgets_are_refused(checkpoint, tmp_path):
    with pytest.raises(ValueError, match="min_pixels / max_pixels .* Gemma-3 resizes every image to its processor's"):
        VLM(pretrained=str(checkpoint), device="cpu", min_pixels=1024)
    folder = shutil.copytree(checkpoint, tmp_path / "pan_and_scan")
    settings = json.loads((folder / "processor_config.json").read_text())
    settings["image_processor"]["do_pan_and_scan"] = True
    (folder / "processor_config.json").write_text(json.dumps(settings))
    with pytest.raises(ValueError, match="do_pan_and_scan=true, which adds crops of an image as further images"):
        VEAModel(pretrained=str(folder), device="cpu", layers="[1]")
