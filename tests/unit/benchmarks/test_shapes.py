"""The benchmarks' checkpoints and image sides come from the family records: one record per ``model_type``."""

from __future__ import annotations

import importlib
import json
import re

import pytest
import torch
from safetensors.torch import load_file

import benchmarks.shapes
from benchmarks.interventions import DEFAULT_SIDES
from benchmarks.interventions import main as benchmark
from benchmarks.shapes import SHAPES, build_checkpoint
from families import FAMILIES
from testbed.tiny import BUILDERS, TESTBEDS, WIDE_BUILDERS, build_tiny_checkpoint

# what the records declare (the values the benchmarks have always used)
EXPECTED_SHAPES = {
    "qwen3_vl": ("tiny", "2b-wide", "7b-wide"),
    "qwen3_vl_moe": ("tiny",),
    "qwen2_5_vl": ("tiny", "7b-wide"),
    "llava": ("tiny", "7b-wide"),
    "llava_next": ("tiny", "7b-wide"),
    "gemma3": ("tiny", "4b-wide"),
}
EXPECTED_SIDES = {
    "qwen3_vl": (512, 1024),
    "qwen3_vl_moe": (512, 1024),
    "qwen2_5_vl": (448, 896),
    "llava": (336,),
    "llava_next": (336, 672),
    "gemma3": (896,),
}


def test_shapes_and_image_sides_are_the_records():
    assert SHAPES == {model_type: family.benchmark_shapes for model_type, family in FAMILIES.items()}
    assert DEFAULT_SIDES == {model_type: family.benchmark_sides for model_type, family in FAMILIES.items()}
    assert SHAPES == EXPECTED_SHAPES and DEFAULT_SIDES == EXPECTED_SIDES
    assert list(SHAPES) == list(DEFAULT_SIDES) == list(FAMILIES)


def test_every_family_has_its_testbed_builders():
    assert list(BUILDERS) == list(TESTBEDS) == list(FAMILIES)
    for model_type, family in FAMILIES.items():
        module = importlib.import_module(family.testbed)
        assert module.__name__.startswith("testbed.") and TESTBEDS[model_type] is module
        assert BUILDERS[model_type] is module.build
    wide = {model_type: WIDE_BUILDERS[model_type].__module__ for model_type in WIDE_BUILDERS}
    assert wide == {
        "qwen3_vl": "testbed.tiny_qwen3",
        "qwen2_5_vl": "testbed.tiny_qwen2_5",
        "llava": "testbed.tiny_llava",
        "llava_next": "testbed.tiny_llava_next",
        "gemma3": "testbed.tiny_gemma3",
    }


def test_the_module_table_lists_exactly_the_wide_shapes():
    rows = re.findall(r"^\| ``(\w+)`` \| ``([\w-]+)`` \|", benchmarks.shapes.__doc__, flags=re.M)
    declared = [(model_type, shape) for model_type, shapes in SHAPES.items() for shape in shapes if shape != "tiny"]
    assert rows == declared


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_tiny_shape_is_the_test_checkpoint(family, tmp_path):
    built = build_checkpoint(family, "tiny", tmp_path / "bench", 8, 18)  # the depths are the wide shapes'
    config = json.loads((built / "config.json").read_text())
    assert config["model_type"] == family
    reference = build_tiny_checkpoint(tmp_path / "tiny", family=family)
    tensors, expected = load_file(str(built / "model.safetensors")), load_file(str(reference / "model.safetensors"))
    assert tensors.keys() == expected.keys()
    assert all(torch.equal(tensors[name], expected[name]) for name in expected)


def test_an_unknown_shape_is_refused_naming_the_familys(tmp_path):
    with pytest.raises(ValueError, match=r"^--shape 7b-wide is not one of qwen3_vl_moe's: tiny$"):
        build_checkpoint("qwen3_vl_moe", "7b-wide", tmp_path / "out", 2, 2)
    with pytest.raises(ValueError, match=r"^--shape 7b-wide is not one of gemma3's: tiny, 4b-wide$"):
        build_checkpoint("gemma3", "7b-wide", tmp_path / "out", 2, 2)
    assert not (tmp_path / "out").exists()


def test_a_wide_shape_is_built_by_its_familys_testbed_and_saved(tmp_path, monkeypatch):
    saved, calls = [], []

    class Saves:
        def __init__(self, what):
            self.what = what

        def save_pretrained(self, out):
            saved.append((self.what, out))

    def build_wide(shape, text_layers, vision_layers):
        calls.append((shape, text_layers, vision_layers))
        return Saves("model"), Saves("processor")

    monkeypatch.setitem(WIDE_BUILDERS, "gemma3", build_wide)
    out = tmp_path / "wide"
    assert build_checkpoint("gemma3", "4b-wide", out, 6, 3) == out
    assert calls == [("4b-wide", 6, 3)] and saved == [("model", out), ("processor", out)]


def test_the_benchmark_refuses_a_shape_its_family_lacks(capsys):
    with pytest.raises(SystemExit) as exit_:
        benchmark(["--family", "qwen3_vl_moe", "--shape", "7b-wide"])
    assert exit_.value.code == 2
    assert "--shape 7b-wide: qwen3_vl_moe has tiny" in capsys.readouterr().err


def test_the_benchmark_help_gives_each_familys_shapes_and_sides(capsys):
    with pytest.raises(SystemExit):
        benchmark(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for model_type, family in FAMILIES.items():
        assert f"{model_type} {', '.join(family.benchmark_shapes)}" in shown
        assert f"{model_type} {','.join(str(side) for side in family.benchmark_sides)}" in shown
