"""Time and peak memory of each intervention model relative to its family's baseline, in one process.

Not a test: a measurement against the cost targets (docs/BENCHMARKS.md). Every model answers the
same prepared batch (one large image) with the same generation settings, after one warm-up
answer each. All models are loaded at once, sharing one copy of the weights, and answer in
rounds (each once per round, the order rotated between rounds), so a busy machine disturbs them alike; each model's time is its
fastest round, as wall time and as CPU time of the process. The rows (``--models``):

- ``baseline`` (``qwen3vl`` on Qwen3-VL, ``vlm_baseline`` on the other families) and ``baseline+log`` (the
  attention log on, its files written);
- ``adaptvis`` (one shared prefix) and ``adaptvis/two-pass`` (two whole-prompt passes, the path it replaced);
  ``clvs`` (shared prefix) and ``clvs/whole``;
- ``vea`` with evidence layers placed as profiling places them (late layers, relative to the depth: layers 17,
  20 and 24 of 28 in the reference study);
- ``pai`` (the attention edit alone, on the shared prefix and every decoding step) and ``pai/guided`` (with the
  image-free guidance, ``gamma`` 1.1: the image-free prompt decoded beside the answer), layers 2-31 of LLaVA-1.5's 32
  at the same relative depth (``models.presets.scaled_layer_range``);
- ``vaf`` with the authors' layers 9-14 of LLaVA-1.5's 32, placed the same way.

Peak memory is what a model alone would need: its weights plus the working memory of an
answer above what was in use before it (``torch.cuda.max_memory_allocated`` on CUDA; on CPU,
where the allocator keeps no statistics, the peak of live tensor storage seen by a dispatch
mode: ``benchmarks.memory``). The working memory is printed too: gigabytes of weights hide a
working-memory difference.

Checkpoints (``--family``, ``--shape``; ``benchmarks.shapes``): random-initialised, nothing downloaded. Image
sides default to about 256 and 1,024 image tokens per family (LLaVA-1.5 always has 576, Gemma-3 256; LLaVA-NeXT
1,176 and 2,928), as each family's record declares them (``Family.benchmark_sides``).

Usage::

    python -m benchmarks.interventions                                       # tiny Qwen3-VL, CPU
    python -m benchmarks.interventions --family llava --shape 7b-wide --repeats 3
    python -m benchmarks.interventions --pretrained PATH --device cuda       # a real checkpoint
"""

from __future__ import annotations

import argparse
import functools
import gc
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from benchmarks.memory import model_bytes, working_memory
from benchmarks.shapes import SHAPES, build_checkpoint
from families import FAMILIES
from interventions.layers import format_layers
from models.batch import GenerationSettings
from models.checkpoint import Checkpoint
from models.methods import METHODS
from models.names import model_name as registered_model_name
from models.presets import scaled_layer_range, scaled_vea_layers
from plugin.loading import engine_for
from vsr_tasks.prompt import build_prompt


@dataclass(frozen=True)
class Entry:
    """One row: the method (``""``: the baseline), its extra model arguments, and the call that answers."""

    class_path: str
    extra: dict = field(default_factory=dict)
    respond: str = "respond"
    log: bool = False  # attention_log on (its files written in a temporary folder)


# row -> (the method it runs, or None for the baseline; its extra arguments)
MODELS: dict[str, Entry] = {
    "baseline": Entry(""),
    "baseline+log": Entry("", log=True),
    "adaptvis": Entry("adaptvis"),
    "adaptvis/two-pass": Entry("adaptvis", respond="answer_whole_prompt"),
    "clvs": Entry("clvs"),
    "clvs/whole": Entry("clvs", respond="answer_whole_prompt"),
    "vea": Entry("vea"),  # layers: vea_layers(depth)
    "pai": Entry("pai", {"gamma": 1.0}),
    "pai/guided": Entry("pai", {"gamma": 1.1}),
    "vaf": Entry("vaf"),  # layers: vaf_layers(depth)
}
BASELINE = "baseline"
# square image sides per family, each record's (Family.benchmark_sides: ~256 / ~1,024 image tokens, or the one size)
DEFAULT_SIDES: dict[str, tuple[int, ...]] = {
    model_type: family.benchmark_sides for model_type, family in FAMILIES.items()
}


def model_name(row: str, family: str) -> str:
    """The ``--model`` a row runs (``models.names``: the study's ``qwen3vl*`` names on Qwen3-VL, ``vlm_*`` elsewhere)."""
    return registered_model_name(MODELS[row].class_path or None, family)


CONTEXT = build_prompt("The cat is left of the dog.")


def share_weights(model: torch.nn.Module, source: torch.nn.Module) -> None:
    """Point every parameter and buffer of ``model`` at ``source``'s storage (one copy for all rows)."""
    sources = dict(source.named_parameters()) | dict(source.named_buffers())
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        tensor.data = sources[name].data


def vea_layers(depth: int) -> str:
    """VEA's evidence layers at the reference study's relative depths (``[17,20,24]`` of 28)."""
    return format_layers(scaled_vea_layers(depth))


class Contender:
    """One row: a loaded engine (weights shared with the others) and its prepared batch."""

    def __init__(
        self, name: str, common: dict, images: list[Image.Image], scratch: Path, family: str, source=None
    ) -> None:
        entry = MODELS[name]
        model = model_name(name, family)
        self.name = re.sub(r"^[a-z]+", model, name)  # the row as the model it runs: vlm_adaptvis/two-pass
        extra = dict(entry.extra)
        if entry.class_path == "vea":
            extra["layers"] = vea_layers(common["depth"])
        params = METHODS[entry.class_path].params() if entry.class_path else None
        if params is not None and hasattr(params, "start_layer"):  # PAI, VAF: their papers' range, at this depth
            extra.update(scaled_layer_range(params, common["depth"]))
        if entry.log:
            extra["attention_log"] = str(scratch / "attention_log" / name.replace("/", "-"))
        arguments = {key: value for key, value in common.items() if key not in ("depth", "batch_size")}
        self.engine = engine_for(model, **arguments, **extra)
        if source is not None:
            share_weights(self.engine.model, source)
            gc.collect()
        self.respond = getattr(self.engine, entry.respond)
        self.images = images
        self.weights = model_bytes(self.engine.model)
        self.batch = None
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.working = 0

    def prepare(self) -> None:
        images = self.images
        self.batch = self.engine.prepare(
            [CONTEXT] * len(images), [[image] for image in images], list(range(len(images))), ["bench"] * len(images)
        )

    def answer_once(self, settings: GenerationSettings) -> str:
        response = self.respond(self.batch, settings)
        self.engine.finish(self.batch, response, response.texts)  # the attention log writes here
        return response.texts[0]

    def run(self, settings: GenerationSettings) -> None:
        device = self.engine.device
        wall, cpu = time.perf_counter(), time.process_time()
        self.answer_once(settings)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.wall.append(time.perf_counter() - wall)
        self.cpu.append(time.process_time() - cpu)

    def reset(self) -> None:
        self.wall, self.cpu, self.working = [], [], 0


def _sides(sides: tuple[int, ...]) -> str:
    return ",".join(str(side) for side in sides)


def _ratio(value: float, base: float) -> str:
    return f"x{value / base:.3f}" if base > 0 else "x  nan"


def measure(contenders: list[Contender], settings: GenerationSettings, repeats: int) -> None:
    for contender in contenders:
        contender.reset()
        contender.prepare()
        answer = functools.partial(contender.answer_once, settings)
        contender.working = working_memory(answer, contender.engine.device)  # also the warm-up (not timed)
    for round_index in tqdm(range(repeats), desc="rounds (every model once per round)"):
        start = round_index % len(contenders)  # a different model goes first each round: no place is favoured
        for contender in contenders[start:] + contenders[:start]:
            contender.run(settings)


def report(contenders: list[Contender], header: str) -> None:
    base = contenders[0]
    batch = base.batch
    print(
        f"{header} image_tokens={int(batch.image_token_mask[0].sum())} prompt_tokens={batch.inputs['input_ids'].shape[1]}"
    )
    print(f"{'model':27s} {'wall ms':>10s} {'ratio':>7s} {'cpu ms':>10s} {'ratio':>7s} {'peak MiB':>10s} {'ratio':>7s} "
          f"{'work MiB':>9s} {'ratio':>7s}")  # fmt: skip
    for contender in contenders:
        wall, cpu = min(contender.wall), min(contender.cpu)
        peak = contender.weights + contender.working
        print(
            f"{contender.name:27s} {wall * 1e3:10.1f} {_ratio(wall, min(base.wall)):>7s} {cpu * 1e3:10.1f} "
            f"{_ratio(cpu, min(base.cpu)):>7s} {peak / 2**20:10.1f} {_ratio(peak, base.weights + base.working):>7s} "
            f"{contender.working / 2**20:9.1f} {_ratio(contender.working, base.working):>7s}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--family", choices=tuple(FAMILIES), default="qwen3_vl", help="model family (config model_type)"
    )
    parser.add_argument(
        "--shape",
        default="tiny",
        help="random checkpoint to build, per family: "
        + "; ".join(f"{model_type} {', '.join(shapes)}" for model_type, shapes in SHAPES.items()),
    )
    parser.add_argument("--pretrained", help="a checkpoint folder instead of --family/--shape (its family detected)")
    parser.add_argument("--text-layers", type=int, default=8, help="wide shapes: decoder layers (default 8)")
    parser.add_argument("--vision-layers", type=int, default=18, help="wide shapes: vision layers (default 18)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument(
        "--image-sides",
        default=None,
        help="square image sides in pixels, one measurement each (default per family: ~256 and ~1,024 image tokens, "
        "or the one size its processor brings every image to; "
        + "; ".join(f"{model_type} {_sides(sides)}" for model_type, sides in DEFAULT_SIDES.items())
        + ")",
    )
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="rounds; each model's fastest round counts")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in names if name not in MODELS]
    if unknown:
        parser.error(f"--models: unknown {unknown}; known: {', '.join(MODELS)}")
    names = [BASELINE] + [name for name in names if name != BASELINE]
    checkpoint = Checkpoint.resolve(args.pretrained) if args.pretrained else None  # its family, before any weight
    family = checkpoint.model_type if checkpoint else args.family
    if not args.pretrained and args.shape not in SHAPES[family]:
        parser.error(f"--shape {args.shape}: {family} has {', '.join(SHAPES[family])}")
    sides = [int(side) for side in (args.image_sides or _sides(DEFAULT_SIDES[family])).split(",") if side.strip()]

    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        if checkpoint is None:
            built = build_checkpoint(family, args.shape, scratch / args.shape, args.text_layers, args.vision_layers)
            checkpoint = Checkpoint.resolve(str(built))
        depth = checkpoint.depth
        common = {
            "pretrained": checkpoint.pretrained,
            "device": args.device,
            "dtype": args.dtype,
            "batch_size": args.batch_size,
            "depth": depth,
        }
        if checkpoint.family.takes_pixel_budget:  # the others resize every image to a size of their own
            common["max_pixels"] = max(sides) ** 2
        settings = GenerationSettings(max_new_tokens=args.max_new_tokens, until=[])
        contenders: list[Contender] = []
        for name in tqdm(names, desc="loading (weights shared)"):
            source = contenders[0].engine.model if contenders else None
            contenders.append(Contender(name, common, [], scratch, family, source))
        shown = args.pretrained or f"{family} {args.shape} (random)"
        print(f"checkpoint={shown} layers={depth} vea_layers={vea_layers(depth)} batch={args.batch_size} "
              f"max_new_tokens={args.max_new_tokens} rounds={args.repeats} threads={torch.get_num_threads()}")  # fmt: skip
        for side in sides:
            rng = np.random.default_rng(0)
            images = [
                Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)) for _ in range(args.batch_size)
            ]
            for contender in contenders:
                contender.images = images
            measure(contenders, settings, args.repeats)
            report(contenders, f"side={side}")


if __name__ == "__main__":
    main()
