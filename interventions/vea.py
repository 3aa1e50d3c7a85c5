"""VEA (Liu et al., "Seeing but Not Believing", arXiv 2510.17771): read where the model looks, then re-render the image.

VEA edits no attention. An attribution prefill records the last row's head-mean image attention
at a few profiled layers (the fused path of :mod:`interventions.recording`); the layer mean is an
evidence grid ``(grid_h, grid_w)`` in merged visual tokens. Each step below is a pure function so
it can be checked alone (docs/METHODS.md, VEA):

1. :func:`denoise`: a cell above ``denoise_lambda`` x the max of its neighbours is an
   attention-sink spike; it takes the neighbours' mean.
2. :func:`upsample`: each token's value painted over its pixel cell of the model-input image.
3. :func:`gaussian_blur`: sigma = ``smooth_strength`` x the image's short side (scipy's
   ``reflect`` border, kernel truncated at 4 sigma, as the authors' ``gaussian_filter``), so the
   mosaic becomes a smooth map.
4. :func:`min_max_normalise` to [0, 1]: raw attention is ~1/N, and without this the "highlight"
   only dims the whole image (the earlier port's bug).
5. :func:`highlight`: ``pixel * (highlight_strength + (1 - highlight_strength) * map)``.

The highlight is applied where the model sees the image: on the processor's normalised ``pixel_values``
(already resized to the token grid), undoing the per-channel normalisation algebraically
(:func:`highlight_normalised`), so the map and the pixels line up exactly and ``highlight_strength = 1`` returns the
input bit for bit. How a family's processor lays the pixels out (patch rows or planes) is the family adapter's
(``families.pixels``); how big a token's cell is, too (``token_pixels``: 32 on Qwen3-VL, 28 on Qwen2.5-VL, 14 on
LLaVA-1.5). Layer profiling from COCO boxes is the :mod:`profiling` package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from interventions.grids import ImageTokens, fold_images

GAUSSIAN_TRUNCATE = 4.0  # kernel radius in sigmas (scipy.ndimage's default)


@dataclass(frozen=True)
class VEAParams:
    """The three numbers that shape the highlighted image (docs/METHODS.md; the study's per split: presets)."""

    NEUTRAL: ClassVar[dict[str, float]] = {"highlight_strength": 1.0}

    smooth_strength: float = 0.5
    highlight_strength: float = 0.5
    denoise_lambda: float = 10.0

    def __post_init__(self) -> None:
        for name in ("smooth_strength", "highlight_strength", "denoise_lambda"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
        if not 0.0 <= self.highlight_strength <= 1.0:
            raise ValueError(f"highlight_strength must be in [0, 1] (1 = no change), got {self.highlight_strength}")
        if self.smooth_strength < 0:
            raise ValueError(f"smooth_strength must be >= 0 (0 = no blur), got {self.smooth_strength}")
        if self.denoise_lambda <= 0:
            raise ValueError(f"denoise_lambda must be > 0, got {self.denoise_lambda}")

    @property
    def neutral(self) -> bool:
        """``highlight_strength`` 1 (:attr:`NEUTRAL`): every pixel is multiplied by 1, the image is unchanged."""
        return all(getattr(self, name) == value for name, value in self.NEUTRAL.items())


def denoise(grid: torch.Tensor, denoise_lambda: float) -> torch.Tensor:
    """Replace isolated spikes: ``v > lambda * max(neighbours)`` -> ``mean(neighbours)``.

    Neighbours are the cells of the 3 x 3 window that exist (centre excluded): a corner has 3, an
    edge cell 5. A grid narrower than 3 on either side is returned unchanged, as VEA's code returns it
    (ZhiningLiu1998/VEA c03e995 ``vea/highlight.py:74-75``): no cell there has a full window.
    """
    if grid.dim() != 2:
        raise ValueError(f"denoise expects a [grid_h, grid_w] grid, got shape {tuple(grid.shape)}")
    grid = grid.double()
    height, width = grid.shape
    if height < 3 or width < 3:
        return grid.clone()
    windows_max = F.pad(grid, (1, 1, 1, 1), value=float("-inf")).unfold(0, 3, 1).unfold(1, 3, 1)
    windows_sum = F.pad(grid, (1, 1, 1, 1), value=0.0).unfold(0, 3, 1).unfold(1, 3, 1)
    exists = F.pad(torch.ones_like(grid), (1, 1, 1, 1), value=0.0).unfold(0, 3, 1).unfold(1, 3, 1)
    centre = torch.ones(3, 3, dtype=torch.bool)
    centre[1, 1] = False
    neighbour_max = windows_max[..., centre].max(dim=-1).values  # [h, w]
    neighbour_mean = windows_sum[..., centre].sum(dim=-1) / exists[..., centre].sum(dim=-1)
    return torch.where(grid > denoise_lambda * neighbour_max, neighbour_mean, grid)


def upsample(grid: torch.Tensor, token_pixels: int) -> torch.Tensor:
    """``[grid_h, grid_w]`` -> ``[grid_h * token_pixels, grid_w * token_pixels]``: each token paints its cell."""
    return grid.repeat_interleave(token_pixels, dim=0).repeat_interleave(token_pixels, dim=1)


def gaussian_kernel(sigma: float, truncate: float = GAUSSIAN_TRUNCATE) -> torch.Tensor:
    """Normalised 1-D Gaussian of radius ``int(truncate * sigma + 0.5)`` (float64)."""
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def folded_kernel(length: int, sigma: float, device: torch.device | str | None = None) -> torch.Tensor:
    """The Gaussian kernel folded onto one period (``2 * length``) of scipy's ``reflect`` extension.

    The signal is extended ``d c b a | a b c d | d c b a`` as far as the kernel reaches (it may be wider
    than the image: sigma = 0.5 x short side gives a radius of twice the side). That extension is
    periodic with period ``2 * length``, so every tap lands on one offset of a period.
    """
    kernel = gaussian_kernel(sigma).to(device)
    radius = (kernel.numel() - 1) // 2
    period = 2 * length
    folded = torch.zeros(period, dtype=torch.float64, device=device)
    folded.index_add_(0, torch.arange(-radius, radius + 1, device=device) % period, kernel)
    return folded


def reflect_blur_matrix(length: int, sigma: float, device: torch.device | str | None = None) -> torch.Tensor:
    """``[length, length]`` matrix ``B`` with ``B @ x`` = Gaussian blur of ``x`` under scipy's ``reflect`` border.

    With the kernel folded onto one period (:func:`folded_kernel`), every source pixel collects the weight of both
    its direct and its mirrored copies. A matrix, not a convolution: a
    4,000-tap kernel over a 1,000-pixel image would otherwise unfold into gigabytes.
    """
    folded = folded_kernel(length, sigma, device)
    period = 2 * length
    rows = torch.arange(length, device=device)[:, None]
    columns = torch.arange(length, device=device)[None, :]
    return folded[(columns - rows) % period] + folded[(period - 1 - columns - rows) % period]


def block_blur_matrix(length: int, block: int, sigma: float, device: torch.device | str | None = None) -> torch.Tensor:
    """``[length, length // block]``: :func:`reflect_blur_matrix` with each run of ``block`` columns summed.

    What blurring a map that is constant on blocks (an upsampled token grid) needs, computed from window
    sums of the folded kernel, so no ``[length, length]`` matrix is ever built.
    """
    folded = folded_kernel(length, sigma, device)
    period = 2 * length
    cumulative = torch.cat([torch.zeros(1, dtype=torch.float64, device=device), folded.repeat(2).cumsum(0)])
    rows = torch.arange(length, device=device)[:, None]
    first = torch.arange(0, length, block, device=device)[None, :]  # first pixel of each block

    def window(start: torch.Tensor) -> torch.Tensor:  # sum of folded[start .. start + block - 1], circularly
        start = start % period
        return cumulative[start + block] - cumulative[start]

    # direct copies: folded[(j - i) mod P] for j in the block; mirrored: folded[(P - 1 - j - i) mod P]
    return window(first - rows) + window(period - rows - first - block)


def gaussian_blur(pixel_map: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of a ``[H, W]`` map (float64, separable, ``reflect`` border); ``sigma <= 0`` returns a copy."""
    if pixel_map.dim() != 2:
        raise ValueError(f"gaussian_blur expects an [H, W] map, got shape {tuple(pixel_map.shape)}")
    pixel_map = pixel_map.double()
    if sigma <= 0:
        return pixel_map.clone()
    height, width = pixel_map.shape
    device = pixel_map.device
    return reflect_blur_matrix(height, sigma, device) @ pixel_map @ reflect_blur_matrix(width, sigma, device).T


def min_max_normalise(pixel_map: torch.Tensor) -> torch.Tensor:
    """Rescale to [0, 1]; a constant map (no evidence signal) becomes all zeros, as in the authors' code."""
    low, high = pixel_map.min(), pixel_map.max()
    if not bool(high > low):
        return torch.zeros_like(pixel_map)
    return (pixel_map - low) / (high - low)


def evidence_pixel_map(grid: torch.Tensor, params: VEAParams, token_pixels: int) -> torch.Tensor:
    """Steps 1-4: evidence grid -> ``[grid_h * token_pixels, grid_w * token_pixels]`` map in [0, 1] (float64, on the grid's device).

    Equal to ``min_max_normalise(gaussian_blur(upsample(denoise(grid)), sigma))``; because the upsampled
    map is constant on each token's cell, the blur is applied through :func:`block_blur_matrix`, so the
    cost is that of ``[H, grid_h] @ [grid_h, grid_w] @ [grid_w, W]``.
    """
    denoised = denoise(grid, params.denoise_lambda)
    grid_h, grid_w = denoised.shape
    height, width = grid_h * token_pixels, grid_w * token_pixels
    sigma = params.smooth_strength * min(height, width)
    if sigma <= 0:
        return min_max_normalise(upsample(denoised, token_pixels))
    left = block_blur_matrix(height, token_pixels, sigma, denoised.device)  # [H, grid_h]
    right = block_blur_matrix(width, token_pixels, sigma, denoised.device)  # [W, grid_w]
    return min_max_normalise(left @ denoised @ right.T)


def highlight(pixels: torch.Tensor, evidence_map: torch.Tensor, highlight_strength: float) -> torch.Tensor:
    """Step 5 on an image ``[..., H, W]`` (channels first, any value range): ``pixel * (h + (1 - h) * map)``."""
    if pixels.shape[-2:] != evidence_map.shape:
        raise ValueError(f"evidence map {tuple(evidence_map.shape)} does not match image {tuple(pixels.shape[-2:])}")
    gain = highlight_strength + (1.0 - highlight_strength) * evidence_map
    return pixels * gain.to(pixels.dtype)


def evidence_grids(
    attention: torch.Tensor,
    images: Sequence[ImageTokens | tuple[int, int]],
    layers: Sequence[int] | None = None,
) -> list[torch.Tensor]:
    """One sequence's recorded attention ``[L_recorded, n_image_tokens]`` -> per image its layer-mean grid.

    ``layers`` picks rows of ``attention`` (default all); tokens are in prompt order, image by image. ``images``: each
    image's token layout (``interventions.grids.ImageTokens``; a ``(rows, columns)`` pair is one row-major grid). An
    image with several token grids (LLaVA-NeXT's base tile and high-resolution tiles) gets their evidence added on
    its finest grid.
    """
    rows = attention if layers is None else attention[list(layers)]
    mean = rows.double().mean(dim=0)
    layouts = [image if isinstance(image, ImageTokens) else ImageTokens.single(*image) for image in images]
    return fold_images(mean, layouts)


def highlight_gain(pixel_map: torch.Tensor, highlight_strength: float, like: torch.Tensor) -> torch.Tensor:
    """Step 5's gain ``h + (1 - h) * map``, computed in ``like``'s dtype and on its device (a fresh tensor)."""
    return pixel_map.to(like.device, like.dtype, copy=True).mul_(1.0 - highlight_strength).add_(highlight_strength)


def highlight_normalised(
    values: torch.Tensor, gain: torch.Tensor, offsets: Sequence[float], out: torch.Tensor, channel_dim: int
) -> torch.Tensor:
    """Step 5 on normalised values: with ``x`` in [0, 1] and ``v = (x - mean) / std``, the highlighted ``x * g``
    normalises to ``v * g + (mean / std) * (g - 1)``: exact, and the identity (bit for bit) where ``g = 1``.

    ``values`` hold the channels along ``channel_dim`` and ``gain`` broadcasts against one channel's values;
    ``offsets`` are ``mean / std`` per channel. The result is written into ``out`` (the layouts' views of it).
    """
    torch.mul(values, gain.unsqueeze(channel_dim), out=out)
    shift = gain - 1.0  # zero where the gain is 1: those values stay as they were
    for channel, offset in enumerate(offsets):
        out.select(channel_dim, channel).add_(shift, alpha=offset)
    return out


def as_uint8_image(image: torch.Tensor) -> np.ndarray:
    """``[C, H, W]`` in [0, 1] -> ``uint8 [H, W, C]`` (rounded) for logs and figures."""
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
