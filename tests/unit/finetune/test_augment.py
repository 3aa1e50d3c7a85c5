"""``--dim_share``: train rows dimmed as VEA dims, deterministic in the seed, held-out rows and dev/test untouched."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from finetune.args import ArgumentError, parse_args
from finetune.augment import DimAugmentation, parse_strength
from finetune.collate import load_rgb
from tests.support.data import colour_vsr_set


def _image(seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8))


def test_the_same_seed_and_row_dim_the_same_way():
    image = _image()
    a, b = DimAugmentation(0.5, (0.2, 0.5), seed=3), DimAugmentation(0.5, (0.2, 0.5), seed=3)
    other = DimAugmentation(0.5, (0.2, 0.5), seed=4)
    rows = range(200)
    chosen = [row for row in rows if a.gain(row, 64, 48) is not None]
    assert chosen == [row for row in rows if b.gain(row, 64, 48) is not None]
    assert chosen != [row for row in rows if other.gain(row, 64, 48) is not None]
    assert 70 <= len(chosen) <= 130  # about half
    row = chosen[0]
    assert np.array_equal(np.asarray(a(image, row)), np.asarray(b(image, row)))
    untouched = next(r for r in rows if r not in chosen)
    assert a(image, untouched) is image


def test_the_gain_is_vea_s_highlight_formula_over_a_region():
    augmentation = DimAugmentation(1.0, (0.2, 0.5), seed=0)
    for row in range(20):
        gain = augmentation.gain(row, 64, 48)
        strength = float(gain.min())
        assert 0.2 - 1e-9 <= strength <= 0.5 + 1e-9 and gain.max() == pytest.approx(1.0)
        image = _image(row)
        dimmed = np.asarray(augmentation(image, row), dtype=np.float64)
        expected = np.clip(np.round(np.asarray(image, dtype=np.float64) * gain[..., None]), 0, 255)
        assert np.array_equal(dimmed, expected)
    assert parse_strength("0.3") == (0.3, 0.3) and parse_strength("0.2, 0.5") == (0.2, 0.5)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--dim_share", "1.5"], "--dim_share"),
        (["--dim_strength", "0.6,0.2"], "LOW"),
        (["--dim_strength", "a,b"], "--dim_strength must be LOW,HIGH"),
    ],
)
def test_bad_values_are_refused_by_name(tmp_path, flags, message):
    with pytest.raises(ArgumentError, match=message):  # parse_args validates
        parse_args(["--vsr_data_dir", str(tmp_path), "--output_dir", str(tmp_path / "o"), *flags])


def test_only_training_rows_are_dimmed(tmp_path, tiny_checkpoint):
    from accelerate.state import AcceleratorState, GradientState

    from finetune.train import build_session

    data = colour_vsr_set(tmp_path / "data", n_train=12, n_eval=4)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (data / "images").iterdir()}
    argv = ["--vsr_data_dir", str(data), "--model_id", str(tiny_checkpoint), "--output_dir", str(tmp_path / "out")]
    argv += ["--dim_share", "1", "--eval_fraction", "0.25", "--dataloader_num_workers", "0", "--max_steps", "1"]
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    try:
        session = build_session(parse_args(argv))

        def dimmed(image, row):
            raise AssertionError(f"held-out row {row} went through the training augmentation")

        augment, session.collator.augment = session.collator.augment, dimmed
        evaluation = session.evaluate()  # the held-out evaluation never sees the augmentation
        session.collator.augment = None
        without_augmentation = session.evaluate()
        session.collator.augment = augment
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    assert session.collator.augment is not None and session.eval_collator.augment is None
    assert evaluation == without_augmentation  # the same numbers whatever the training rows go through
    answers = len(session.splits.held_out)
    assert evaluation["eval_loss"] > 0 and evaluation["eval_accuracy"] * answers == round(
        evaluation["eval_accuracy"] * answers
    )
    example = session.splits.train[0]
    plain = session.eval_collator([(example, 1.0)])["pixel_values"]
    dimmed = session.collator([(example, 1.0)])["pixel_values"]
    assert not torch.equal(plain, dimmed) and float(dimmed.mean()) < float(plain.mean())
    for held_out in session.splits.held_out:  # the held-out rows reach the model exactly as the files are
        as_is = session.processor.image_processor(images=[load_rgb(held_out.image)], return_tensors="pt")
        assert torch.equal(session.eval_collator([(held_out, 1.0)])["pixel_values"], as_is["pixel_values"])
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (data / "images").iterdir()}
    assert before == after  # dev and test images (and every file) untouched: dimming happens in memory


def test_a_resumed_run_refuses_other_augmentation_settings(tmp_path, tiny_checkpoint):
    from tests.support.commands import SMALL, train

    data = colour_vsr_set(tmp_path / "data", n_train=12, n_eval=4)
    output = tmp_path / "run"
    train(data, tiny_checkpoint, output, *SMALL, "--max_steps", "2", "--save_steps", "1", "--stop_at_step", "1",
          "--dim_share", "0.5")  # fmt: skip
    with pytest.raises(ValueError, match="dim_share"):
        train(data, tiny_checkpoint, output, *SMALL, "--max_steps", "2", "--save_steps", "1", "--dim_share", "0.3",
              "--resume_from_checkpoint", "latest")  # fmt: skip
    resumed = train(data, tiny_checkpoint, output, *SMALL, "--max_steps", "2", "--save_steps", "1",
                    "--dim_share", "0.5", "--resume_from_checkpoint", "latest")  # fmt: skip
    assert resumed["finished"] and resumed["data_settings"]["dim_share"] == 0.5
