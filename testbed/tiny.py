"""Build a tiny, randomly initialised checkpoint of a supported model family on disk.

Tests and the demo need a real checkpoint folder that loads through the same ``from_pretrained`` path a
user's checkpoint takes, without a hub download. The result is about 1 MB and is built in well under a second.

Usage: ``python -m testbed.tiny OUT_DIR [--family qwen3_vl|qwen3_vl_moe|qwen2_5_vl|llava|llava_next|gemma3] [--layers 4]
[--seed 0] [--tokenizer bytes|words|qwen]``. ``--family`` takes the config's ``model_type``: Qwen3-VL (the default,
:mod:`testbed.tiny_qwen3`), Qwen3-VL mixture-of-experts (:mod:`testbed.tiny_qwen3_moe`), Qwen2.5-VL
(:mod:`testbed.tiny_qwen2_5`), LLaVA-1.5 and LLaVA-NeXT in the llava-hf format (:mod:`testbed.tiny_llava`,
:mod:`testbed.tiny_llava_next`) or Gemma-3
(:mod:`testbed.tiny_gemma3`). Each family's record (``families.FAMILIES``) names its module (``Family.testbed``);
:data:`BUILDERS` holds that module's ``build``, one per supported family, keyed by ``model_type``, and
:data:`WIDE_BUILDERS` its ``build_wide`` for a family with wide benchmark shapes (``benchmarks.shapes``).

``--tokenizer qwen`` puts the tiny architecture behind what a user's checkpoint has: the real Qwen
BPE vocabulary (151,936 ids, special tokens at their real ids), the released Qwen3-VL instruct chat
template's rendering and the released preprocessor settings (see :mod:`testbed.qwen_tokenizer`).
"""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch

from families import FAMILIES, Family
from testbed.vocabulary import TOKENIZERS


def _testbed_of(family: Family) -> ModuleType:
    """The module ``family.testbed`` names, checked: a family without a tiny checkpoint would go untested, one whose
    wide benchmark shapes nothing builds would fail only when measured."""
    try:
        module = importlib.import_module(family.testbed)
    except ModuleNotFoundError as error:
        if error.name is None or not (family.testbed + ".").startswith(error.name + "."):
            raise  # the module exists, something it imports does not
        raise ImportError(f"{family.model_type}: its testbed module {family.testbed!r} does not exist") from None
    wide = [shape for shape in family.benchmark_shapes if shape != "tiny"]
    needs = ["build"] + (["build_wide"] if wide else [])
    missing = [name for name in needs if not callable(getattr(module, name, None))]
    if missing:
        raise ImportError(
            f"{family.model_type}: its testbed module {family.testbed} has no {' or '.join(missing)}"
            + (f" (its benchmark shapes {', '.join(wide)} are built by build_wide)" if "build_wide" in missing else "")
        )
    return module


TESTBEDS: dict[str, ModuleType] = {model_type: _testbed_of(family) for model_type, family in FAMILIES.items()}
# model_type -> builder(tokenizer kind, decoder layers, seed) -> (model, processor, tokenizer, vision position embedding
# or None); the caller seeds torch first
BUILDERS: dict[str, Callable[[str, int, int], tuple]] = {
    model_type: module.build for model_type, module in TESTBEDS.items()
}
# model_type -> build_wide(shape, text layers, vision layers) -> (model, processor), for a family with wide shapes
WIDE_BUILDERS: dict[str, Callable[[str, int, int], tuple]] = {
    model_type: TESTBEDS[model_type].build_wide
    for model_type, family in FAMILIES.items()
    if set(family.benchmark_shapes) - {"tiny"}
}
TINY_FAMILIES = tuple(FAMILIES)  # in the families' order


def build_tiny_checkpoint(
    out_dir: str | Path,
    num_layers: int = 4,
    seed: int = 0,
    tokenizer: str = "bytes",
    vision_position_std: float | None = None,
    family: str = "qwen3_vl",
) -> Path:
    """Write a loadable tiny checkpoint of ``family`` (model, tokenizer, processor) into ``out_dir``.

    ``vision_position_std``: re-draw the vision tower's position embedding with this standard deviation. At the
    config's 0.02 it is drowned by the patch embedding, so a random (frozen) tower hardly says where a patch is and
    the image's average feature carries almost nothing about left and right (a linear probe on it: 0.54 on the
    demo's left-of task); at 2.0, 0.84. A model trained from scratch then leaves chance at once (docs/DEMO.md).
    """
    if family not in BUILDERS:
        raise ValueError(f"family must be one of {', '.join(TINY_FAMILIES)} (a config model_type), got {family!r}")
    if family != "qwen3_vl" and tokenizer == "qwen":
        raise ValueError("--tokenizer qwen is Qwen3-VL's released vocabulary and template; use bytes or words here")
    if family == "qwen2_5_vl" and vision_position_std is not None:
        raise ValueError("--vision_position_std: Qwen2.5-VL's vision tower has no learned position embedding")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recipe = {"num_layers": num_layers, "seed": seed, "tokenizer": tokenizer}
    if family != "qwen3_vl":
        recipe["family"] = family
    if vision_position_std is not None:
        recipe["vision_position_std"] = vision_position_std
    torch.manual_seed(seed)
    model, processor, tokenizer, positions = BUILDERS[family](tokenizer, num_layers, seed)
    if vision_position_std is not None:
        with torch.no_grad():
            positions.normal_(0.0, vision_position_std)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    (out_dir / "tiny_recipe.json").write_text(json.dumps(recipe))
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", help="folder to write the checkpoint into (created if missing)")
    parser.add_argument(
        "--family",
        choices=TINY_FAMILIES,
        default="qwen3_vl",
        help="the config's model_type: qwen3_vl (default), qwen3_vl_moe (mixture-of-experts), qwen2_5_vl, llava "
        "(LLaVA-1.5, llava-hf format), llava_next (LLaVA-NeXT / 1.6, llava-hf format) or gemma3 (Gemma-3)",
    )
    parser.add_argument("--layers", type=int, default=4, help="decoder layers (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
    parser.add_argument(
        "--tokenizer",
        choices=TOKENIZERS,
        default="bytes",
        help="bytes: one token per byte (default); words: BPE with the VSR prompt's words as tokens; "
        "qwen: the real Qwen vocabulary, chat template and preprocessor settings (needs: pip install dashscope)",
    )
    parser.add_argument(
        "--vision_position_std",
        type=float,
        default=None,
        help="re-draw the vision tower's position embedding with this std (default: the config's 0.02); 2.0 lets a "
        "frozen random tower tell left from right (the demo)",
    )
    args = parser.parse_args(argv)
    if args.vision_position_std is not None and args.vision_position_std <= 0:
        parser.error(f"--vision_position_std must be positive, got {args.vision_position_std}")
    try:
        path = build_tiny_checkpoint(
            args.out_dir,
            num_layers=args.layers,
            seed=args.seed,
            tokenizer=args.tokenizer,
            vision_position_std=args.vision_position_std,
            family=args.family,
        )
    except ValueError as error:
        parser.error(str(error))
    except ModuleNotFoundError as error:
        raise SystemExit(str(error)) from None
    print(f"tiny {args.family} checkpoint written to {path}")


if __name__ == "__main__":
    main()
