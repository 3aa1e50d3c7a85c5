"""VEA's pure steps against hand-computed arrays (METHODS.md, VEA steps 3-5), and the pixel layout."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch
from PIL import Image

from families.pixels import PatchLayout, highlight_pixel_values
from interventions.vea import (
    VEAParams,
    denoise,
    evidence_grids,
    evidence_pixel_map,
    gaussian_blur,
    highlight,
    min_max_normalise,
    upsample,
)
from profiling.scores import top_layers
from testbed.tiny_qwen3 import build_processor
from testbed.vocabulary import build_tokenizer
from tests.support.environment import require
from tests.support.tolerance import assert_matches_reference


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


# ------------------------------------------------------------------ denoise
def test_denoise_replaces_a_central_spike_by_the_mean_of_its_eight_neighbours():
    grid = t([[1, 2, 1], [2, 100, 4], [1, 2, 3]])
    expected = t([[1, 2, 1], [2, 2, 4], [1, 2, 3]])  # (1+2+1+2+4+1+2+3) / 8 = 2
    assert torch.equal(denoise(grid, 10), expected)


def test_denoise_uses_only_existing_neighbours_at_corners_and_edges():
    """A border cell's window holds its existing neighbours only, never copies of itself: VEA's code pads with the
    edge's own values (vea/highlight.py:77-78), so there a border spike is its own neighbour and always survives."""
    grid = t([[90, 1, 2], [3, 5, 1], [2, 1, 4]])
    # corner (0,0): neighbours 1, 3, 5 -> max 5, 90 > 50 -> mean 3
    assert torch.equal(denoise(grid, 10), t([[3, 1, 2], [3, 5, 1], [2, 1, 4]]))
    centre = t([[1, 2, 1], [2, 30, 4], [1, 1, 1]])
    # (1,1): neighbours 1, 2, 1, 2, 4, 1, 1, 1 -> max 4: 30 < 10 * 4 stays; with lambda 5, 30 > 20 -> their mean 13 / 8
    assert torch.equal(denoise(centre, 10), centre)
    assert torch.equal(denoise(centre, 5), t([[1, 2, 1], [2, 13 / 8, 4], [1, 1, 1]]))
    side = t([[1, 2, 1], [40, 3, 4], [1, 1, 1]])  # a spike on the left edge: neighbours 1, 2, 3, 1, 1 -> mean 1.6
    assert torch.equal(denoise(side, 10), t([[1, 2, 1], [1.6, 3, 4], [1, 1, 1]]))


def test_a_grid_narrower_than_three_is_not_denoised():
    """As VEA's code (vea/highlight.py:74-75): no cell of a 2-row or 1-column grid has a full window."""
    for grid in (t([[90, 1, 2], [3, 5, 1]]), t([[90], [1], [2]]), t([[7.0]])):
        assert torch.equal(denoise(grid, 10), grid)


def test_denoise_decides_on_the_original_values_and_keeps_clusters():
    grid = t([[1, 1, 1, 1], [1, 100, 100, 1], [1, 1, 1, 1]])  # two adjacent peaks: evidence, not a spike
    assert torch.equal(denoise(grid, 10), grid)


# ------------------------------------------------------ upsample, blur, norm
def test_upsample_paints_each_token_over_its_cell():
    assert torch.equal(
        upsample(t([[1, 2], [3, 4]]), token_pixels=2),
        t([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]),
    )


def test_gaussian_blur_matches_a_hand_computed_reflected_convolution():
    # sigma 0.5: radius int(4 * 0.5 + 0.5) = 2, weights exp(-2 x^2) for x in -2..2.
    # [0, 3, 0] reflected by 2 on each side (scipy 'reflect'): [3, 0 | 0, 3, 0 | 0, 3].
    z = 1 + 2 * math.exp(-2) + 2 * math.exp(-8)
    side = 3 * (math.exp(-2) + math.exp(-8)) / z
    expected = t([[side, 3 / z, side]])
    torch.testing.assert_close(gaussian_blur(t([[0, 3, 0]]), 0.5), expected, atol=1e-12, rtol=0)


def test_gaussian_blur_with_a_kernel_wider_than_the_image():
    constant = torch.full((64, 96), 0.25, dtype=torch.float64)
    torch.testing.assert_close(gaussian_blur(constant, 32.0), constant, atol=1e-12, rtol=0)
    require(importlib.util.find_spec("scipy") is not None, "scipy is a test dependency: pip install -e '.[dev]'")
    import scipy.ndimage as scipy_ndimage  # an independent implementation

    rng = np.random.default_rng(0)
    image = rng.random((12, 20))
    for sigma in (0.7, 3.0, 6.0):
        expected = scipy_ndimage.gaussian_filter(image, sigma, mode="reflect", truncate=4.0)
        torch.testing.assert_close(gaussian_blur(torch.from_numpy(image), sigma).numpy(), expected, atol=1e-10, rtol=0)
    assert torch.equal(gaussian_blur(t([[1, 2]]), 0.0), t([[1, 2]]))


def test_min_max_normalise():
    assert torch.equal(min_max_normalise(t([[2, 4], [6, 10]])), t([[0, 0.25], [0.5, 1]]))
    assert torch.equal(min_max_normalise(t([[3, 3], [3, 3]])), torch.zeros(2, 2, dtype=torch.float64))


def test_highlight_scales_pixels_by_the_evidence():
    pixels = t([[[100, 200], [40, 0]]])  # [C=1, H=2, W=2]
    evidence = t([[0, 1], [0.5, 1]])
    assert torch.equal(highlight(pixels, evidence, 0.5), t([[[50, 200], [30, 0]]]))
    assert torch.equal(highlight(pixels, evidence, 1.0), pixels)
    assert torch.equal(highlight(pixels, evidence, 0.0), t([[[0, 200], [20, 0]]]))


def test_evidence_pixel_map_composes_the_steps():
    params = VEAParams(smooth_strength=0.0, highlight_strength=0.5, denoise_lambda=10)
    grid = t([[1, 3], [5, 40]])  # 40 < 10 * 5: no spike; no blur; normalised to (v - 1) / 39
    expected = upsample((grid - 1) / 39, token_pixels=2)
    torch.testing.assert_close(evidence_pixel_map(grid, params, token_pixels=2), expected, atol=1e-15, rtol=0)
    grid = t([[1, 3, 2], [5, 40, 0.5]])
    for smooth in (0.1, 0.5, 0.8):  # the fast path equals the steps composed on the full-size map
        expected = min_max_normalise(gaussian_blur(upsample(denoise(grid, 10), 32), smooth * 64))
        got = evidence_pixel_map(grid, VEAParams(smooth, 0.5, 10), token_pixels=32)
        assert got.shape == (64, 96) and float(got.min()) == 0.0 and float(got.max()) == 1.0
        torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)


def test_evidence_grids_average_the_chosen_layers_per_image():
    attention = torch.arange(20, dtype=torch.float32).reshape(2, 10)  # 2 layers, images of 2x3 and 2x2 tokens
    first, second = evidence_grids(attention, [(2, 3), (2, 2)])
    assert torch.equal(first, t([[5, 6, 7], [8, 9, 10]]))
    assert torch.equal(second, t([[11, 12], [13, 14]]))
    (only_second_layer,) = evidence_grids(attention[:, :6], [(2, 3)], layers=[1])
    assert torch.equal(only_second_layer, t([[10, 11, 12], [13, 14, 15]]))
    with pytest.raises(ValueError, match="need 10"):
        evidence_grids(attention[:, :9], [(2, 3), (2, 2)])


def test_top_layers_keeps_the_ceil_fraction_best():
    assert top_layers([0.5, 0.9, 0.7, float("nan"), 0.8], 0.4) == [1, 4]
    assert top_layers([0.5, 0.9, 0.7, float("nan"), 0.8], 0.1) == [1]
    assert top_layers([0.6] * 36, 0.1) == [32, 33, 34, 35]  # ties keep the higher layers, as VEA's code
    assert top_layers([0.9, 0.7, 0.9, 0.7, 0.9], 0.4) == [2, 4]
    with pytest.raises(ValueError):
        top_layers([0.5], 0.0)


@pytest.mark.parametrize("bad", [{"highlight_strength": 1.5}, {"smooth_strength": -1}, {"denoise_lambda": 0}])
def test_params_refuse_out_of_range_values(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        VEAParams(**bad)


# ----------------------------------------- highlight in the model's pixel space
@pytest.fixture(scope="module")
def image_processor():
    return build_processor(build_tokenizer()).image_processor


def test_highlight_pixel_values_equals_processing_the_highlighted_image(image_processor):
    """Independent check of the patch layout: highlighting ``pixel_values`` equals processing a highlighted image.

    The image is already at the processor's size (a multiple of 32) and has even values, and the map is 0/1
    with strength 0.5, so the highlighted image is exact in uint8.
    """
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 128, (64, 96, 3)) * 2, rng.integers(0, 128, (96, 32, 3)) * 2]
    maps = [np.zeros((64, 96)), np.zeros((96, 32))]
    maps[0][5:40, 10:70] = 1
    maps[1][50:, :17] = 1
    gains = [0.5 + 0.5 * m for m in maps]
    highlighted = [(image * gain[..., None]).astype(np.uint8) for image, gain in zip(images, gains)]
    original = image_processor(images=[Image.fromarray(i.astype(np.uint8)) for i in images], return_tensors="pt")
    expected = image_processor(images=[Image.fromarray(i) for i in highlighted], return_tensors="pt")
    assert original["image_grid_thw"].tolist() == [[1, 4, 6], [1, 6, 2]]
    layout = PatchLayout.from_processor(image_processor)
    got = highlight_pixel_values(
        original["pixel_values"], original["image_grid_thw"], [torch.from_numpy(m) for m in maps], 0.5, layout
    )
    assert_matches_reference(got, expected["pixel_values"])
    for index, image in enumerate(highlighted):  # and the inverse layout gives the image back
        rows = slice(0, 24) if index == 0 else slice(24, 36)
        back = layout.rows_to_image(got[rows], original["image_grid_thw"][index].tolist())
        assert_matches_reference(back * 255, torch.from_numpy(image).permute(2, 0, 1).float())


def test_highlight_strength_one_returns_the_pixel_values_bit_for_bit(image_processor):
    rng = np.random.default_rng(1)
    processed = image_processor(images=[Image.fromarray(rng.integers(0, 255, (70, 101, 3), dtype=np.uint8))])
    pixel_values = torch.as_tensor(processed["pixel_values"])
    grid = torch.as_tensor(processed["image_grid_thw"])
    evidence = torch.rand(int(grid[0, 1]) * 16, int(grid[0, 2]) * 16, dtype=torch.float64)
    layout = PatchLayout.from_processor(image_processor)
    assert torch.equal(highlight_pixel_values(pixel_values, grid, [evidence], 1.0, layout), pixel_values)
