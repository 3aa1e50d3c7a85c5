"""First-token logits of every family x method on the tiny checkpoints, saved to compare a refactor against.

Why: a redesign must not change a number. Run it before (``--save before.pt``), change the code, run it after
(``--compare before.pt``): every case's logits must agree to ``--tolerance`` (1e-6 by default). The cases cover each
family (random tiny checkpoints, seed 0, four layers), the baseline, AdaptVis on both branches, CLVS with and
without the position-unbiased layer 0 and with a stop that fires or never does, VEA with and without the hint, and
the attention log on the baseline. Each case answers the same two-sequence batch (two image sizes, so left padding
is exercised).

Usage::

    python -m benchmarks.snapshot --save /tmp/before.pt
    python -m benchmarks.snapshot --compare /tmp/before.pt
    python -m benchmarks.snapshot --save /tmp/before.pt --trained demo_out/finetune_2_0/checkpoint-2000  # and a trained one
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from testbed.tiny import TINY_FAMILIES, build_tiny_checkpoint

CONTEXTS = [
    "Look at the image and decide whether the statement is True or False.\nStatement: The cat is left of the dog.\n"
    "Answer with exactly one word: True or False.",
    "Is the red square above the circle?",
]
CASES: dict[str, tuple[str, dict]] = {
    "baseline": ("baseline", {}),
    "baseline+log": ("baseline", {"attention_log": "LOG"}),
    "adaptvis/sharpen": ("adaptvis", {"confidence_threshold": 0.0, "sharpen_weight": 1.7}),
    "adaptvis/smoothen": ("adaptvis", {"confidence_threshold": 1.0, "smoothen_weight": 0.3}),
    "clvs/unbiased-stop": ("clvs", {"uncertainty_threshold": 1.0}),
    "clvs/plain-nostop": ("clvs", {"uncertainty_threshold": 0.0, "position_unbiased": False, "smoothing": 0.5}),
    "vea": ("vea", {"layers": "[1,2]", "smooth_strength": 0.3, "highlight_strength": 0.4}),
    "vea/hint": ("vea", {"layers": "[2]", "hint": True}),
    "pai": ("pai", {"alpha": 0.8, "gamma": 1.0, "start_layer": 1}),
    "pai/guided": ("pai", {"alpha": 0.5, "gamma": 1.5, "start_layer": 1}),
    "vaf": ("vaf", {"enh_para": 1.5, "sup_para": 0.5, "start_layer": 1, "end_layer": 4}),
}


def images() -> list[list[Image.Image]]:
    rng = np.random.default_rng(0)
    sizes = [(96, 64), (64, 64)]
    return [[Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))] for w, h in sizes]


def first_token_logits(pretrained: Path, method: str, family: str, arguments: dict, log_dir: Path) -> torch.Tensor:
    """The batch's first-token logits ``[2, V]`` from the model ``--model`` would run, through its public seams."""
    from models.batch import GenerationSettings
    from models.names import model_name
    from plugin import model_class

    arguments = {key: (str(log_dir) if value == "LOG" else value) for key, value in arguments.items()}
    registered = model_class(model_name(None if method == "baseline" else method, family))
    model = registered(pretrained=str(pretrained), device="cpu", dtype="float32", batch_size=2, **arguments)
    batch = model.engine.prepare(list(CONTEXTS), images(), [0, 1], ["snapshot", "snapshot"])
    response = model.engine.respond(batch, GenerationSettings(max_new_tokens=2))
    return response.first_token_logits.detach().cpu().clone()


def snapshot(root: Path, trained: list[Path] = ()) -> dict[str, torch.Tensor]:
    """Every case on each family's random tiny checkpoint, then on each ``trained`` checkpoint (a fine-tuned one, whose
    decisions are real: the demo's), keyed ``family/case`` and ``trained/<folder>/case``."""
    import json

    torch.manual_seed(0)
    checkpoints = [(family, build_tiny_checkpoint(root / family, family=family), family) for family in TINY_FAMILIES]
    for path in trained:
        family = json.loads((Path(path) / "config.json").read_text())["model_type"]
        checkpoints.append((f"trained/{Path(path).name}", Path(path), family))
    results = {}
    for label, checkpoint, family in checkpoints:
        for case, (method, arguments) in CASES.items():
            key = f"{label}/{case}"
            results[key] = first_token_logits(checkpoint, method, family, arguments, root / "log" / key)
            print(f"{key}: argmax {results[key].argmax(-1).tolist()}", flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.snapshot", description=__doc__)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--save", type=Path, help="write the logits to this file")
    action.add_argument("--compare", type=Path, help="compare with the logits in this file")
    parser.add_argument("--tolerance", type=float, default=1e-6, help="largest absolute difference allowed")
    parser.add_argument(
        "--trained", type=Path, action="append", default=[], help="a fine-tuned checkpoint to add (repeatable)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        results = snapshot(Path(folder), args.trained)
    if args.save:
        torch.save(results, args.save)
        print(f"saved {len(results)} cases to {args.save}")
        return
    before = torch.load(args.compare)
    worst = 0.0
    failed, new = [], sorted(set(results) - set(before))
    for key in sorted(set(before) | set(results)):
        if key not in results:
            failed.append(f"{key}: only before")
            continue
        if key not in before:  # a family or case added since the snapshot: nothing to compare it with
            continue
        difference = float((before[key] - results[key]).abs().max())
        worst = max(worst, difference)
        if difference > args.tolerance:
            failed.append(f"{key}: max |difference| {difference:.3g}")
    print(f"{len(results) - len(new)} cases compared; largest |difference| {worst:.3g} (tolerance {args.tolerance:g})")
    if new:
        print(f"{len(new)} new cases, not in {args.compare} (not compared): {', '.join(new)}")
    for line in failed:
        print(f"DIFFERENT {line}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
