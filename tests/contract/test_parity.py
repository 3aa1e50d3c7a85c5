"""qwen3vl answers exactly as a plain transformers ``generate`` call written here, with the same prompt."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lmms_eval.api.instance import Instance
from PIL import Image
from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

from plugin.registered import Qwen3VLBaseline as Qwen3VL
from vsr_tasks.prompt import build_prompt

CAPTIONS = ["The cat is on the mat.", "The red bus is far away from the small dog on the left."]
SIZES = [(96, 128), (160, 64)]


def _images():
    rng = np.random.default_rng(7)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in SIZES]


def _reference_answers(checkpoint, max_new_tokens: int) -> list[str]:
    """Each prompt alone, processed and generated the way the Qwen3-VL model card shows."""
    processor = AutoProcessor.from_pretrained(checkpoint)
    model = Qwen3VLForConditionalGeneration.from_pretrained(checkpoint, dtype=torch.float32).eval()
    answers = []
    for caption, image in zip(CAPTIONS, _images()):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": build_prompt(caption)}]}]
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = processor(text=[text], images=[image], return_tensors="pt")
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        answers.append(processor.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))
    return answers


@pytest.mark.parametrize("batch_size", [1, 2])
def test_generated_text_equals_plain_generate(tiny_checkpoint, batch_size):
    max_new_tokens = 12
    model = Qwen3VL(pretrained=str(tiny_checkpoint), device="cpu", batch_size=batch_size)
    docs = [{"caption": caption, "image": image} for caption, image in zip(CAPTIONS, _images())]
    model.task_dict = {"parity": {"test": docs}}
    gen_kwargs = {"max_new_tokens": max_new_tokens, "temperature": 0, "until": ["<never>"]}
    requests = [
        Instance(
            request_type="generate_until",
            arguments=(build_prompt(doc["caption"]), gen_kwargs, lambda d: [d["image"]], index, "parity", "test"),
            idx=0,
            metadata={"task": "parity", "doc_id": index, "repeats": 1},
        )
        for index, doc in enumerate(docs)
    ]
    answers = model.generate_until(requests)
    reference = _reference_answers(tiny_checkpoint, max_new_tokens)
    assert answers == reference
    assert all(len(answer) > 0 for answer in reference)
