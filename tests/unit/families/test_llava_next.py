"""LLaVA-NeXT's anyres layout: the family's per-image token layout is the model's own (newlines where the model puts
``image_newline``, counts equal to the processor's), maps fold both grids, VEA highlights every tile and the base
tile from one map, the three template variants render, and what the family cannot run is refused before any weight.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from interventions.grids import ImageTokens, TokenGrid, fold_image_tokens, fold_images
from interventions.vea import VEAParams
from models.batch import GenerationSettings
from plugin.registered import VLMVEA as VEAModel
from plugin.registered import VLMAdaptVis as AdaptVisModel
from plugin.registered import VLMBaseline as VLM
from tests.support.reference import fold_by_loops
from tests.support.templates import LLAMA_3, MISTRAL
from tests.support.tolerance import assert_matches_reference, tolerance

# (height, width): wide, tall, very wide (3 tiles across), square, and smaller than one tile
SIZES = [(96, 128), (160, 64), (50, 300), (200, 200), (40, 30)]


@pytest.fixture(scope="module")
def checkpoint(family_checkpoint):
    return family_checkpoint("llava_next")


def _images(seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in SIZES]


def test_the_layout_is_the_models_own(checkpoint):
    """Per image: the processor's image-token count equals the layout's, and the packed features the model puts in
    those positions equal its ``image_newline`` exactly where the layout has a row's trailing token."""
    engine = VLM(pretrained=str(checkpoint), device="cpu", batch_size=5).engine
    images = _images()
    batch = engine.prepare(["Where is it?"] * len(images), [[image] for image in images], list(range(5)), ["u"] * 5)
    features = engine.model.get_image_features(**engine.family.encoder_inputs(batch.inputs)).pooler_output
    newline = engine.model.model.image_newline
    grids = set()
    for b, ([layout], packed) in enumerate(zip(batch.image_tokens, features)):
        assert int(batch.image_token_mask[b].sum()) == layout.tokens == packed.shape[0]
        base, high = layout.parts
        assert base == TokenGrid(8, 8) and high.trailing == 1 and layout.grid == (high.rows, high.columns)
        expected = torch.zeros(layout.tokens, dtype=torch.bool)
        expected[[base.tokens + r * (high.columns + 1) + high.columns for r in range(high.rows)]] = True
        assert torch.equal((packed == newline[None]).all(dim=-1), expected)
        cells = layout.cells()  # the per-token map: (grid, row, column), or None for a newline
        assert [cell is None for cell in cells] == expected.tolist()
        assert cells[0] == (0, 0, 0) and cells[base.tokens - 1] == (0, 7, 7) and cells[base.tokens] == (1, 0, 0)
        assert cells[-2] == (1, high.rows - 1, high.columns - 1)
        grids.add(layout.grid)
    assert len(grids) == len(SIZES)  # every aspect gives its own grid


def test_folding_spreads_the_base_tile_by_area_and_drops_the_newlines():
    image = ImageTokens((4, 6), (TokenGrid(2, 2), TokenGrid(4, 6, trailing=1)))
    values = torch.rand(3, image.tokens, dtype=torch.float64)
    folded = fold_image_tokens(values, image)
    torch.testing.assert_close(folded, fold_by_loops(values, image), atol=1e-12, rtol=0)
    newlines = values[:, 4:].reshape(3, 4, 7)[..., 6].sum(-1)
    torch.testing.assert_close(folded.sum((-1, -2)), values.sum(-1) - newlines, atol=1e-12, rtol=0)
    one_base_cell = torch.zeros(image.tokens, dtype=torch.float64)
    one_base_cell[1] = 1.0  # the base tile's top-right cell: the map's top half, right half
    expected = torch.zeros(4, 6, dtype=torch.float64)
    expected[:2, 3:] = 1.0 / 6
    torch.testing.assert_close(fold_image_tokens(one_base_cell, image), expected, atol=1e-12, rtol=0)
    single = torch.rand(2, 12)
    assert torch.equal(fold_images(single, [ImageTokens.single(3, 4)])[0], single.reshape(2, 3, 4))
    with pytest.raises(ValueError, match="need 32"):
        fold_images(single, [image])


def test_a_spike_lights_its_cell_in_the_tiles_and_the_base_tile(checkpoint):
    """A one-token spike on the high-resolution map, the rest dimmed to black: in the canvas tiles exactly that
    token's 14 px square keeps its pixels; in the base tile (the map squashed with the image) the spike's place
    keeps them and a far corner goes black."""
    vea = VEAModel(pretrained=str(checkpoint), device="cpu", batch_size=1, layers="[1]")
    image = _images()[0]
    batch = vea.engine.prepare(["Where is it?"], [[image]], [0], ["u"])
    [layout] = batch.image_tokens[0]
    rows, columns = layout.grid
    grid = torch.full((rows, columns), 0.01, dtype=torch.float64)
    row, column = rows - 2, 1
    grid[row, column] = 0.02
    params = VEAParams(smooth_strength=0.0, highlight_strength=0.0, denoise_lambda=10.0)
    highlighted = vea.method.highlight(vea.engine, batch, [[grid]], params).inputs["pixel_values"]
    before, after = batch.inputs["pixel_values"], highlighted
    [view_before] = vea.method.layout.images(before, batch.inputs["image_sizes"])
    [view_after] = vea.method.layout.images(after, batch.inputs["image_sizes"])
    cell = (slice(None), slice(row * 14, (row + 1) * 14), slice(column * 14, (column + 1) * 14))
    assert_matches_reference(view_after[cell], view_before[cell])
    kept = torch.zeros(view_after.shape[-2:], dtype=torch.bool)
    kept[cell[1:]] = True
    assert float(view_after[:, ~kept].abs().max()) <= tolerance(view_before)
    base_before, base_after = (vea.method.layout.images_of_base(values)[0] for values in (before, after))
    y, x = int((row + 0.5) / rows * 112), int((column + 0.5) / columns * 112)  # the spike's place, squashed
    assert float(base_after[:, y, x].sub(base_before[:, y, x]).abs().max()) < 0.05
    assert (
        float(base_after[:, :20, -20:].abs().max())
        <= tolerance(base_before)
        < float(base_before[:, :20, -20:].abs().max())
    )


def _with_template(checkpoint, tmp_path, name: str, template: str):
    folder = shutil.copytree(checkpoint, tmp_path / name)
    (folder / "chat_template.jinja").write_text(template)
    return folder


@pytest.mark.parametrize(("name", "template", "ending"), [("mistral", MISTRAL, " [/INST]"),
                                                        ("llama3", LLAMA_3, "<|end_header_id|>\n\n")])  # fmt: skip
def test_the_mistral_and_llama3_templates_run_with_one_bos(checkpoint, tmp_path, name, template, ending):
    folder = _with_template(checkpoint, tmp_path, name, template)
    wrapper = AdaptVisModel(pretrained=str(folder), device="cpu", batch_size=2, confidence_threshold=0.0)
    batch = wrapper.engine.prepare(["Where is it?"] * 2, [[image] for image in _images()[:2]], [0, 1], ["u"] * 2)
    tokenizer = wrapper.engine.tokenizer
    for row, mask in zip(batch.inputs["input_ids"], batch.inputs["attention_mask"]):
        real = row[mask.bool()].tolist()
        assert real[0] == tokenizer.bos_token_id and real.count(tokenizer.bos_token_id) == 1
        assert tokenizer.decode(real).endswith(ending)
    settings = GenerationSettings(max_new_tokens=3)
    new, old = wrapper.engine.respond(batch, settings), wrapper.engine.answer_whole_prompt(batch, settings)
    assert_matches_reference(new.first_token_logits, old.first_token_logits)


def _edit_processor(folder, change) -> None:
    path = folder / "processor_config.json"
    settings = json.loads(path.read_text())
    change(settings["image_processor"])
    path.write_text(json.dumps(settings))


def test_missing_or_mismatched_pinpoints_and_pixel_budgets_are_refused(checkpoint, tmp_path):
    with pytest.raises(ValueError, match="min_pixels / max_pixels .* LLaVA-NeXT picks each image's resolution"):
        VLM(pretrained=str(checkpoint), device="cpu", max_pixels=4096)
    folder = shutil.copytree(checkpoint, tmp_path / "null_pinpoints")
    _edit_processor(folder, lambda settings: settings.update(image_grid_pinpoints=None))
    with pytest.raises(ValueError, match="image processor has no image_grid_pinpoints"):
        VLM(pretrained=str(folder), device="cpu")
    folder = shutil.copytree(checkpoint, tmp_path / "no_pinpoints")  # transformers would fill in 336 px canvases
    _edit_processor(folder, lambda settings: settings.pop("image_grid_pinpoints"))
    with pytest.raises(ValueError, match="processor settings have no image_grid_pinpoints; transformers would fill in"):
        VLM(pretrained=str(folder), device="cpu")
    folder = shutil.copytree(checkpoint, tmp_path / "other_pinpoints")
    _edit_processor(folder, lambda settings: settings.update(image_grid_pinpoints=[[112, 112]]))
    with pytest.raises(
        ValueError, match=r"config has image_grid_pinpoints .* but its image processor \[\[112, 112\]\]"
    ):
        AdaptVisModel(pretrained=str(folder), device="cpu")
