"""bfloat16 (CUDA's default dtype) and float16 on CPU: what a user's first GPU run computes, checked without a GPU.

Tolerance. float32 runs are held to 1e-5 against the eager reference. bfloat16 keeps 8 significant bits
(unit roundoff 2^-9 against float32's 2^-24, 32,768 times coarser; float16: 2^-11, 8,192 times), and every
matmul of the model rounds to it, so nothing computed in half precision can be as close. What can be
demanded: that an intervention adds no error beyond what half precision already costs the plain model.
The bound is therefore measured, not guessed: ``2 x`` the plain model's own deviation from float32 on the
same batch (the largest difference of its first-token logits, or of its attention rows for the log), plus
float32's 1e-5. Measured on the fine-tuned tiny checkpoint: plain bfloat16 deviates by ~0.03 in logits of
size ~7; AdaptVis and CLVS in bfloat16 deviate from the float32 eager reference by the same ~0.03.
"""

from __future__ import annotations

import json

import pytest
import torch

from interventions import SteeringState, steer
from interventions.state import RowEdit
from models.attention_log import read_records
from models.batch import GenerationSettings
from plugin.registered import Qwen3VLAdaptVis, Qwen3VLCLVS, Qwen3VLPAI, Qwen3VLVAF
from plugin.registered import Qwen3VLBaseline as Qwen3VL
from tests.support.batches import batch_of, documents
from tests.support.commands import train
from tests.support.data import colour_vsr_set
from tests.support.reference import (
    adaptvis_row_fn,
    clvs_reference_logits,
    eager_logits,
    image_positions,
    load_reference_model,
    pai_weights_fn,
    recomputed_logits,
    vaf_weights_fn,
)

# bfloat16 runs torch's bfloat16 SDPA kernels: ``bfloat16_sdpa`` (pyproject.toml's markers) says why CI's rerun under
# forced AVX2 kernels leaves them out
BFLOAT16_SDPA = pytest.mark.bfloat16_sdpa
DTYPES = [pytest.param("bfloat16", marks=BFLOAT16_SDPA), "float16"]
ONE_TOKEN = GenerationSettings(max_new_tokens=1)


@pytest.fixture(scope="module")
def setup(trained):
    checkpoint, data = trained
    model, eager = load_reference_model(checkpoint)
    return str(checkpoint), documents(data), model, eager


def half_precision_bound(checkpoint, docs, model, eager, dtype) -> float:
    """2 x the plain model's deviation from float32 in this dtype, plus float32's tolerance."""
    plain = Qwen3VL(pretrained=checkpoint, device="cpu", batch_size=4, dtype=dtype)
    batch = batch_of(plain, docs)
    deviation = (
        (plain.engine.respond(batch, ONE_TOKEN).first_token_logits - eager_logits(model, eager, batch)).abs().max()
    )
    assert 0 < float(deviation) < 0.5  # half precision really ran, and stayed sane
    return 2 * float(deviation) + 1e-5


@pytest.mark.parametrize("dtype", DTYPES)
def test_adaptvis_agrees_with_the_eager_reference(setup, dtype):
    checkpoint, docs, model, eager = setup
    bound = half_precision_bound(checkpoint, docs, model, eager, dtype)
    # weights exaggerated from the paper's 0.2 / 1.2 so that the effect stands far above half precision's rounding
    # whatever the few training steps of the fixture converged to on this CPU and thread count
    wrapper = Qwen3VLAdaptVis(
        pretrained=checkpoint, device="cpu", batch_size=4, dtype=dtype, smoothen_weight=0.05, sharpen_weight=4.0
    )
    batch = batch_of(wrapper, docs)
    response = wrapper.engine.respond(batch, ONE_TOKEN)
    alphas = [extra["decision"]["alpha"] for extra in response.extras]
    assert {a for a, ids in zip(alphas, image_positions(batch)) if ids} == {0.05, 4.0}  # both branches, as in float32
    expected = eager_logits(model, eager, batch, adaptvis_row_fn(alphas, set(range(8)), image_positions(batch)))
    error = (response.first_token_logits - expected).abs().max()
    assert error <= bound, f"{dtype}: {float(error):.4f} > {bound:.4f}"
    plain = eager_logits(model, eager, batch)
    effect = (expected - plain).abs().max()
    # the effect stands above the rounding: an intervention that did nothing would be off by more than the bound
    assert effect > 2 * bound, f"{float(effect):.4f}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_clvs_agrees_with_the_eager_reference(setup, dtype):
    checkpoint, docs, model, eager = setup
    bound = half_precision_bound(checkpoint, docs, model, eager, dtype)
    wrapper = Qwen3VLCLVS(pretrained=checkpoint, device="cpu", batch_size=4, dtype=dtype)
    batch = batch_of(wrapper, docs)
    response = wrapper.engine.respond(batch, ONE_TOKEN)
    stops = [extra["decision"]["stop_layer"] for extra in response.extras]
    assert stops == [5, 5, 5, None]  # as in float32: the three image prompts stop after layer 5
    expected, _ = clvs_reference_logits(model, eager, batch, 0.7, 0.8, True, stops)
    error = (response.first_token_logits - expected).abs().max()
    assert error <= bound, f"{dtype}: {float(error):.4f} > {bound:.4f}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["pai", "vaf"])
def test_pai_and_vaf_agree_with_the_eager_reference(setup, dtype, method):
    """PAI's edit of the first token's row, and VAF's of every row after the image with its keys scaled in float32
    and rounded once into the half dtype: no error beyond what half precision costs the plain model."""
    checkpoint, docs, model, eager = setup
    bound = half_precision_bound(checkpoint, docs, model, eager, dtype)
    layers = range(1, 8)
    # factors far from the papers' so that the effect stands far above half precision's rounding
    if method == "pai":
        wrapper = Qwen3VLPAI(pretrained=checkpoint, device="cpu", batch_size=4, dtype=dtype, alpha=1.5, gamma=1.0,
                             start_layer=1)  # fmt: skip
    else:
        wrapper = Qwen3VLVAF(pretrained=checkpoint, device="cpu", batch_size=4, dtype=dtype, enh_para=3.0,
                             sup_para=0.4, start_layer=1, end_layer=8)  # fmt: skip
    batch = batch_of(wrapper, docs)
    images = image_positions(batch)
    last = batch.inputs["input_ids"].shape[1] - 1
    edit = pai_weights_fn(1.5, layers, images, last) if method == "pai" else vaf_weights_fn(3.0, 0.4, layers, images)
    response = wrapper.engine.respond(batch, ONE_TOKEN)
    with torch.no_grad():
        expected = recomputed_logits(model, eager, batch.inputs, weights_fn=edit)
        plain = recomputed_logits(model, eager, batch.inputs)
    error = (response.first_token_logits - expected).abs().max()
    assert error <= bound, f"{dtype}: {float(error):.4f} > {bound:.4f}"
    effect = (expected - plain).abs().max()
    assert effect > 2 * bound, f"{float(effect):.4f}"  # a method that did nothing would be off by more than the bound


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_log_agrees_with_the_eager_reference(setup, dtype, tmp_path):
    checkpoint, docs, model, eager = setup
    deviations = {}
    for name, klass in (("plain", Qwen3VL), ("adaptvis", Qwen3VLAdaptVis)):
        wrapper = klass(
            pretrained=checkpoint, device="cpu", batch_size=4, dtype=dtype, attention_log=str(tmp_path / name)
        )
        batch = batch_of(wrapper, docs)
        response = wrapper.engine.respond(batch, ONE_TOKEN)
        wrapper.engine.finish(batch, response, response.texts)
        alphas = [extra.get("decision", {}).get("alpha", 1.0) for extra in response.extras]
        eager_logits(model, eager, batch, adaptvis_row_fn(alphas, set(range(8)), image_positions(batch)))
        images = image_positions(batch)
        worst = 0.0
        for record in read_records(tmp_path / name):
            b = record["doc_id"]
            expected = [float(eager.captured[layer].mean(dim=1)[b, images[b]].sum()) for layer in range(8)]
            worst = max(worst, max(abs(x - y) for x, y in zip(record["image_mass"], expected)))
        deviations[name] = worst
    assert 0 < deviations["plain"] < 0.05
    assert deviations["adaptvis"] <= 2 * deviations["plain"] + 1e-5, json.dumps(deviations)


@BFLOAT16_SDPA
def test_the_edited_row_is_computed_in_float32_and_cast_once(setup):
    checkpoint, docs, _, _ = setup
    wrapper = Qwen3VLAdaptVis(pretrained=checkpoint, device="cpu", batch_size=4, dtype="bfloat16")
    batch = batch_of(wrapper, docs)
    layer = wrapper.model.model.language_model.layers[2].self_attn
    fixed: dict[str, torch.Tensor] = {}

    class Uniform:
        """Equal weight on every visible key of layer 2 (a deliberately simple edit)."""

        def begin(self, state):
            pass

        def hooks(self, model, state):
            return []

        def edit(self, row):
            if row.layer != 2:
                return None
            weights = torch.softmax(torch.zeros_like(row.scores) + row.mask, dim=-1)
            fixed["weights"] = weights
            return RowEdit(weights=weights, rows=torch.ones(weights.shape[0], dtype=torch.bool))

    captured = {}
    handles = [
        layer.v_proj.register_forward_hook(lambda m, a, out: captured.__setitem__("v", out)),
        layer.o_proj.register_forward_pre_hook(lambda m, a: captured.__setitem__("o_in", a[0])),
    ]
    try:
        with steer(wrapper.model, SteeringState(batch.image_token_mask, method=Uniform())):
            wrapper.engine.prefill_logits(batch)
    finally:
        for handle in handles:
            handle.remove()
    config = wrapper.model.config.text_config
    heads, kv_heads, dim = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    value = captured["v"].view(batch.size, -1, kv_heads, dim).transpose(1, 2).float()  # [B, H_kv, N, D]
    value = value.repeat_interleave(heads // kv_heads, dim=1)  # [B, H, N, D]
    expected = torch.matmul(fixed["weights"].unsqueeze(2), value).squeeze(2).to(torch.bfloat16)  # float32, one cast
    written = captured["o_in"][:, -1].view(batch.size, heads, dim)
    assert written.dtype == torch.bfloat16
    assert torch.equal(written, expected)
    in_bfloat16 = torch.matmul(fixed["weights"].to(torch.bfloat16).unsqueeze(2), value.to(torch.bfloat16)).squeeze(2)
    assert not torch.equal(written, in_bfloat16)  # a bfloat16 product would differ: the test can tell them apart


@BFLOAT16_SDPA
def test_finetune_in_bfloat16_learns_a_tiny_overfit_set(tmp_path, tiny_checkpoint):
    data = colour_vsr_set(tmp_path / "data", n_train=8, n_eval=2)
    common = ["--per_device_batch_size", "4", "--gradient_accumulation_steps", "1", "--eval_fraction", "0"]
    train(data, tiny_checkpoint, tmp_path / "out", *common, "--max_steps", "30", "--learning_rate", "2e-3", "--bf16")
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    losses = [entry["train_loss"] for entry in log if "train_loss" in entry]
    assert len(losses) == 30 and all(loss == loss for loss in losses)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
