"""VEA layer profiling: AUROC against boxes whose positions are known, both split families, train rows only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoProcessor

from models.host import ProfileRequest
from plugin.loading import engine_for
from profiling.coco import CocoBoxes, coco_category, token_labels
from profiling.errors import ProfilingError
from profiling.profile import run_profile
from profiling.samples import load_profile_rows, parse_caption, select_samples
from profiling.scores import auroc, top_layers
from tests.support.commands import run_module
from tests.support.environment import REPO_ROOT
from tests.support.reference import fold_by_loops, llava_next_region, load_reference_model
from tests.support.tolerance import assert_matches_reference
from vsr_tasks.data import PACKAGED_ANNOTATIONS
from vsr_tasks.prompt import build_prompt
from vsr_tasks.synthetic import generate
from vsr_tasks.synthetic import parse_caption as synthetic_parse_caption

SAMPLES = 8


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """A generated set whose boxes are known; random rows stripped of subj/obj as in real VSR, zeroshot rows keep them."""
    out = tmp_path_factory.mktemp("vea_profile") / "data"
    generate(out, 16, 6, 4, seed=2, image_size=96)
    zeroshot = out / "splits" / "zeroshot"
    zeroshot.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        path = out / "splits" / "random" / f"{split}.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        (zeroshot / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        stripped = [{k: v for k, v in row.items() if k not in ("subj", "obj")} for row in rows]
        path.write_text("".join(json.dumps(row) + "\n" for row in stripped))
    return out


# ------------------------------------------------------------ small pieces
def test_auroc_hand_values():
    assert auroc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])) == 0.75
    assert auroc(torch.tensor([1.0, 1.0]), torch.tensor([0, 1])) == 0.5  # a tie counts one half
    assert auroc(torch.tensor([3.0, 1.0, 2.0]), torch.tensor([1, 0, 0])) == 1.0
    assert np.isnan(auroc(torch.tensor([1.0, 2.0]), torch.tensor([1, 1])))


def test_token_labels_map_cells_back_to_original_pixels():
    # a 64 x 64 image covered by 2 x 2 tokens: a box spanning x 30..34, y 40..44 touches both lower cells
    labels = token_labels([[30, 40, 4, 4]], (0, 0, 64, 64), (2, 2))
    assert labels.tolist() == [[False, False], [True, True]]
    # a 128 x 64 original: a token column covers 64 original pixels; touching an edge is no overlap
    labels = token_labels([[64, 0, 6, 10]], (0, 0, 128, 64), (2, 2))
    assert labels.tolist() == [[False, True], [False, False]]
    # LLaVA's centre crop of a 128 x 64 image: the grid covers x 32..96 only; a box left of it is no cell's
    labels = token_labels([[0, 0, 30, 64]], (32, 0, 96, 64), (2, 2))
    assert not bool(labels.any())
    labels = token_labels([[60, 0, 8, 8]], (32, 0, 96, 64), (2, 2))
    assert labels.tolist() == [[True, True], [False, False]]  # x 60..68 straddles the crop's middle at 64


def test_a_box_edge_on_a_llava_cell_boundary_labels_only_the_cell_it_covers():
    """LLaVA-1.5 keeps the centre 300 x 300 of a 300 x 460 image: y 80..380, 24 rows of 12.5 px. A box from y = 92.5
    (the boundary between rows 0 and 1) covers row 1 only; a float region starting at 80.00000000000001 also
    labelled row 0."""
    from families import FAMILIES

    class LlavaImageProcessor:  # llava-1.5-7b-hf's resize and centre crop
        size, crop_size, do_center_crop = {"shortest_edge": 336}, {"height": 336, "width": 336}, True

    processor = type("Processor", (), {"image_processor": LlavaImageProcessor()})()
    [region] = FAMILIES["llava"].image_regions(processor, [(300, 460)])
    assert region == (0.0, 80.0, 300.0, 380.0)
    column = token_labels([[0, 92.5, 12.5, 12.5]], region, (24, 24))[:, 0]
    assert column.nonzero().flatten().tolist() == [1]
    column = token_labels([[0, 80, 12.5, 12.5]], region, (24, 24))[:, 0]
    assert column.nonzero().flatten().tolist() == [0]


@pytest.mark.parametrize(
    "caption, relation, expected",
    [
        ("The cat is inside the refrigerator.", "inside", ("cat", "refrigerator")),
        ("The teddy bear is at the right side of the dog.", "at the right side of", ("teddy bear", "dog")),
        ("The suitcase contains the cat.", "contains", ("suitcase", "cat")),
        ("The bed has as a part the couch.", "has as a part", ("bed", "couch")),
        ("The dogs are under the umbrella.", "under", ("dogs", "umbrella")),
        ("The cat is on the bed", "on", ("cat", "bed")),
        ("A cat sits on the bed.", "on", None),
    ],
)
def test_parse_caption(caption, relation, expected):
    assert parse_caption(caption, relation) == expected


def test_coco_category_names_and_aliases():
    names = {"motorcycle", "dog", "dining table", "cell phone"}
    assert coco_category("motorbike", names) == "motorcycle"
    assert coco_category("dogs", names) == "dog"
    assert coco_category("Dining  Table", names) == "dining table"
    assert coco_category("unicorn", names) is None


def test_every_real_train_caption_parses_on_both_splits():
    """Random rows carry no subj/obj: the caption and its relation are all there is."""
    for dataset_type in ("random", "zeroshot"):
        rows = load_profile_rows(PACKAGED_ANNOTATIONS, dataset_type)
        parsed = [parse_caption(row["caption"], row["relation"]) for row in rows]
        assert None not in parsed, dataset_type
        if dataset_type == "random":
            assert not any("subj" in row for row in rows)
        else:  # where the subj/obj fields are spelled as in the caption ("orse" is not), they agree with the parse
            spelled = [r["caption"].startswith(f"The {r['subj']} ") for r in rows]
            agree = [p == (r["subj"], r["obj"]) for p, r, ok in zip(parsed, rows, spelled) if ok]
            assert len(agree) > 0.9 * len(rows) and all(agree)


def test_held_out_splits_are_refused(synthetic):
    for split in ("dev", "test"):
        with pytest.raises(ProfilingError, match="train split only"):
            load_profile_rows(synthetic, "random", split)
    completed = run_module(
        "profiling",
        ["--model", "unused", "--vsr_data_dir", str(synthetic),
         "--coco_annotations_dir", str(synthetic / "annotations"), "--split", "dev", "--out", "x.json"],
        dict(os.environ),
    )  # fmt: skip
    assert completed.returncode != 0
    assert "refusing split 'dev'" in completed.stderr


def test_missing_annotations_name_the_expected_file(tmp_path, synthetic):
    with pytest.raises(ProfilingError, match="instances_train2017.json"):
        CocoBoxes(tmp_path / "absent")
    empty = tmp_path / "annotations"
    empty.mkdir()
    rows = load_profile_rows(synthetic, "random")
    with pytest.raises(ProfilingError, match=str(empty / "instances_train2017.json")):
        select_samples(rows, synthetic / "images", CocoBoxes(empty), limit=4)


def test_unmappable_nouns_are_counted_not_guessed(synthetic):
    rows = load_profile_rows(synthetic, "random")
    rows = [dict(rows[0], caption="The unicorn is left of the cat.", relation="left of")] + rows[1:4]
    selection = select_samples(rows, synthetic / "images", CocoBoxes(synthetic / "annotations"), limit=10)
    assert len(selection.samples) == 3
    assert selection.unmapped_nouns == {"unicorn": 1}
    assert selection.skipped == {"subject or object is not a COCO category": 1}


# ----------------------------------------------------- profiling end to end
def reference_layer_auroc(checkpoint: Path, data: Path, images: list[str]) -> list[float]:
    """Mean AUROC per layer from an eager forward, labels from the COCO JSON read by hand, pairwise AUROC."""
    model, eager = load_reference_model(checkpoint)
    processor = AutoProcessor.from_pretrained(checkpoint)
    coco = json.loads((data / "annotations" / "instances_train2017.json").read_text())
    category = {c["name"]: c["id"] for c in coco["categories"]}
    image_id = {i["file_name"]: i["id"] for i in coco["images"]}
    rows = {r["image"]: r for r in map(json.loads, (data / "splits/random/train.jsonl").read_text().splitlines())}
    per_sample = []
    for name in images:
        row = rows[name]
        subject, _, obj = synthetic_parse_caption(row["caption"])
        wanted = {category[subject], category[obj]}
        boxes = [
            a["bbox"] for a in coco["annotations"] if a["image_id"] == image_id[name] and a["category_id"] in wanted
        ]
        from PIL import Image

        image = Image.open(data / "images" / name).convert("RGB")
        messages = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": build_prompt(row["caption"])}]}
        ]
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        bos = processor.tokenizer.bos_token
        written = bool(bos) and text.startswith(bos)  # Gemma's template writes <bos>: the tokenizer adds no second
        inputs = processor(text=[text], images=[image], return_tensors="pt", add_special_tokens=not written)
        with torch.no_grad():
            model(**inputs)
        keys = (inputs["input_ids"][0] == model.config.image_token_id).nonzero().flatten()
        left = top = 0.0
        layout = None
        if model.config.model_type == "qwen3_vl":  # 96 px images: the model sees them unscaled, 32 px per token
            _, grid_h, grid_w = (int(v) // m for v, m in zip(inputs["image_grid_thw"][0], (1, 2, 2)))
            assert image.size == (grid_w * 32, grid_h * 32)
            cell_w = cell_h = 32.0
        elif model.config.model_type == "llava_next":  # the high-resolution grid over the kept tokens' region
            from families import FAMILIES
            from testbed.tiny_llava import PATCH
            from testbed.tiny_llava_next import PINPOINTS, TILE

            [[layout]] = FAMILIES["llava_next"].image_tokens(processor, inputs, [1])
            grid_h, grid_w = layout.grid
            left, top, right, bottom = llava_next_region(*image.size, TILE, PATCH, PINPOINTS)
            cell_w, cell_h = (right - left) / grid_w, (bottom - top) / grid_h
        else:  # LLaVA: the 112 px crop, 14 px patches; Gemma-3: 224 px pooled to 8 x 8; both 8 x 8 cells of 96 / 8 px
            grid_h = grid_w = 8
            cell_w = cell_h = image.size[0] / grid_w
        assert len(keys) == (layout.tokens if layout else grid_h * grid_w)
        labels = []
        for i in range(grid_h):
            for j in range(grid_w):
                cell = (left + j * cell_w, top + i * cell_h, left + (j + 1) * cell_w, top + (i + 1) * cell_h)
                labels.append(
                    any(x < cell[2] and x + w > cell[0] and y < cell[3] and y + h > cell[1] for x, y, w, h in boxes)
                )
        scores_by_layer = [eager.captured[layer][0].mean(dim=0)[keys] for layer in range(len(eager.captured))]
        if layout is not None:  # both grids' attention on the high-resolution cells (tests.support.reference)
            scores_by_layer = [fold_by_loops(scores, layout).flatten() for scores in scores_by_layer]
        aurocs = []
        for scores in scores_by_layer:
            positives = [float(s) for s, is_box in zip(scores, labels) if is_box]
            negatives = [float(s) for s, is_box in zip(scores, labels) if not is_box]
            pairs = [(p > n) + 0.5 * (p == n) for p in positives for n in negatives]
            aurocs.append(sum(pairs) / len(pairs))
        per_sample.append(aurocs)
    return np.mean(np.array(per_sample), axis=0).tolist()


@pytest.mark.parametrize("family", ["qwen3_vl", "llava", "llava_next", "gemma3"])
def test_profile_cli_picks_layers_by_auroc(tmp_path, family_checkpoint, synthetic, family):
    tiny_checkpoint = family_checkpoint(family)
    out = tmp_path / "layers.json"
    arguments = ["--model", str(tiny_checkpoint), "--vsr_data_dir", str(synthetic),
                 "--dataset_type", "random", "--coco_annotations_dir", str(synthetic / "annotations"),
                 "--samples", str(SAMPLES), "--layer_top_fraction", "0.5", "--device", "cpu", "--out", str(out)]  # fmt: skip
    if family == "qwen3_vl":  # the command as a user starts it
        completed = subprocess.run([sys.executable, "-m", "profiling", *arguments], cwd=REPO_ROOT,
                                   capture_output=True, text=True, timeout=300)  # fmt: skip
    else:
        completed = run_module("profiling", arguments, dict(os.environ))
    assert completed.returncode == 0, completed.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["split"] == "train" and record["dataset_type"] == "random"
    assert record["samples_selected"] == SAMPLES and record["samples_used"] == len(record["samples"]) > 0
    expected = reference_layer_auroc(tiny_checkpoint, synthetic, [s["image"] for s in record["samples"]])
    assert_matches_reference(record["layer_auroc"], expected)
    assert record["layers"] == top_layers(expected, 0.5) and len(record["layers"]) == 2
    assert f"written to {out}" in completed.stdout


def test_zeroshot_rows_with_subj_obj_profile_the_same_samples(tiny_checkpoint, synthetic):
    engine = engine_for("qwen3vl", pretrained=str(tiny_checkpoint), device="cpu")
    engine.use_steered_attention()
    common = dict(model="tiny", vsr_data_dir=str(synthetic), coco_annotations_dir=str(synthetic / "annotations"),
                  samples=SAMPLES, layer_top_fraction=0.1)  # fmt: skip
    random_record = run_profile(engine, ProfileRequest(dataset_type="random", **common), progress=False)
    zeroshot_record = run_profile(engine, ProfileRequest(dataset_type="zeroshot", **common), progress=False)
    assert zeroshot_record["samples"] == random_record["samples"]
    assert zeroshot_record["layer_auroc"] == random_record["layer_auroc"]
    assert zeroshot_record["layers"] == random_record["layers"] == top_layers(random_record["layer_auroc"], 0.1)
