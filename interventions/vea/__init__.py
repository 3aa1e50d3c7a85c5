"""VEA (Liu et al., arXiv 2510.17771): read where the model looks, then re-render the image.

VEA edits no attention. An attribution prefill records the last row's head-mean image attention
at a few profiled layers (the fused path of :mod:`interventions.recording`); the layer mean is an
evidence grid ``(grid_h, grid_w)`` in merged visual tokens. Each step below is a pure function so
it can be checked alone (docs/METHODS.md, VEA):

1. :func:`denoise`: a cell above ``denoise_lambda`` x the max of its neighbours is an
   attention-sink spike; it takes the neighbours' mean.
2. :func:`upsample`: each token's value painted over its 32 x 32 pixel cell of the model-input image.
3. :func:`gaussian_blur`: sigma = ``smooth_strength`` x the image's short side (scipy's
   ``reflect`` border, kernel truncated at 4 sigma, as the authors' ``gaussian_filter``), so the
   mosaic becomes a smooth map.
4. :func:`min_max_normalise` to [0, 1]: raw attention is ~1/N, and without this the "highlight"
   only dims the whole image (the earlier port's bug).
5. :func:`highlight`: ``pixel * (highlight_strength + (1 - highlight_strength) * map)``.

The highlight is applied where the model sees the image: :func:`highlight_pixel_values` works on
the processor's ``pixel_values`` (already resized to the token grid), undoing the per-channel
normalisation algebraically, so the map and the pixels line up exactly and
``highlight_strength = 1`` returns the input bit for bit. Layer profiling from COCO boxes lives
in :mod:`interventions.vea.profile`, which imports this module (never the reverse); the command
``python -m interventions.vea profile ...`` is :mod:`interventions.vea.__main__`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

TOKEN_PIXELS = 32  # one merged Qwen3-VL visual token: patch 16 x spatial merge 2 (the layouts give each family's)
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
    edge cell 5. A 1 x 1 grid has none and is returned unchanged.
    """
    if grid.dim() != 2:
        raise ValueError(f"denoise expects a [grid_h, grid_w] grid, got shape {tuple(grid.shape)}")
    grid = grid.double()
    height, width = grid.shape
    if height * width == 1:
        return grid.clone()
    windows_max = F.pad(grid, (1, 1, 1, 1), value=float("-inf")).unfold(0, 3, 1).unfold(1, 3, 1)
    windows_sum = F.pad(grid, (1, 1, 1, 1), value=0.0).unfold(0, 3, 1).unfold(1, 3, 1)
    exists = F.pad(torch.ones_like(grid), (1, 1, 1, 1), value=0.0).unfold(0, 3, 1).unfold(1, 3, 1)
    centre = torch.ones(3, 3, dtype=torch.bool)
    centre[1, 1] = False
    neighbour_max = windows_max[..., centre].max(dim=-1).values  # [h, w]
    neighbour_mean = windows_sum[..., centre].sum(dim=-1) / exists[..., centre].sum(dim=-1)
    return torch.where(grid > denoise_lambda * neighbour_max, neighbour_mean, grid)


def upsample(grid: torch.Tensor, token_pixels: int = TOKEN_PIXELS) -> torch.Tensor:
    """``[grid_h, grid_w]`` -> ``[grid_h * token_pixels, grid_w * token_pixels]``: each token paints its cell."""
    return grid.repeat_interleave(token_pixels, dim=0).repeat_interleave(token_pixels, dim=1)


def gaussian_kernel(sigma: float, truncate: float = GAUSSIAN_TRUNCATE) -> torch.Tensor:
    """Normalised 1-D Gaussian of radius ``int(truncate * sigma + 0.5)`` (float64)."""
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def reflect_blur_matrix(length: int, sigma: float, device: torch.device | str | None = None) -> torch.Tensor:
    """``[length, length]`` matrix ``B`` with ``B @ x`` = Gaussian blur of ``x`` under scipy's ``reflect`` border.

    The signal is extended ``d c b a | a b c d | d c b a`` as far as the kernel reaches (it may be wider
    than the image: sigma = 0.5 x short side gives a radius of twice the side). That extension is
    periodic with period ``2 * length``, so the kernel is folded onto one period and every source pixel
    collects the weight of both its direct and its mirrored copies. A matrix, not a convolution: a
    4,000-tap kernel over a 1,000-pixel image would otherwise unfold into gigabytes.
    """
    kernel = gaussian_kernel(sigma).to(device)
    radius = (kernel.numel() - 1) // 2
    period = 2 * length
    folded = torch.zeros(period, dtype=torch.float64, device=device)
    folded.index_add_(0, torch.arange(-radius, radius + 1, device=device) % period, kernel)
    rows = torch.arange(length, device=device)[:, None]
    columns = torch.arange(length, device=device)[None, :]
    return folded[(columns - rows) % period] + folded[(period - 1 - columns - rows) % period]


def block_blur_matrix(length: int, block: int, sigma: float, device: torch.device | str | None = None) -> torch.Tensor:
    """``[length, length // block]``: :func:`reflect_blur_matrix` with each run of ``block`` columns summed.

    What blurring a map that is constant on blocks (an upsampled token grid) needs, computed from window
    sums of the folded kernel, so no ``[length, length]`` matrix is ever built.
    """
    kernel = gaussian_kernel(sigma).to(device)
    radius = (kernel.numel() - 1) // 2
    period = 2 * length
    folded = torch.zeros(period, dtype=torch.float64, device=device)
    folded.index_add_(0, torch.arange(-radius, radius + 1, device=device) % period, kernel)
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


def evidence_pixel_map(grid: torch.Tensor, params: VEAParams, token_pixels: int = TOKEN_PIXELS) -> torch.Tensor:
    """Steps 1-4: evidence grid -> ``[grid_h * 32, grid_w * 32]`` map in [0, 1] (float64, on the grid's device).

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
    attention: torch.Tensor, grids: Sequence[tuple[int, int]], layers: Sequence[int] | None = None
) -> list[torch.Tensor]:
    """One sequence's recorded attention ``[L_recorded, n_image_tokens]`` -> per image its layer-mean grid.

    ``layers`` picks rows of ``attention`` (default all); tokens are in prompt order, image by image,
    row-major within an image (how Qwen3-VL lays out merged visual tokens).
    """
    rows = attention if layers is None else attention[list(layers)]
    mean = rows.double().mean(dim=0)
    sizes = [h * w for h, w in grids]
    if sum(sizes) != mean.numel():
        raise ValueError(f"{mean.numel()} image tokens recorded but the image grids {list(grids)} need {sum(sizes)}")
    return [part.reshape(h, w) for part, (h, w) in zip(torch.split(mean, sizes), grids)]


@dataclass(frozen=True)
class PatchLayout:
    """How the Qwen2-VL/Qwen3-VL image processor flattens an image into ``pixel_values`` rows.

    Each row is one ``patch x patch`` patch, ``channels x temporal x patch x patch`` values, rows
    ordered by merge block (``grid_h / merge, grid_w / merge, merge, merge``); values are
    ``(x - mean) / std`` per channel with ``x`` in [0, 1].
    """

    patch_size: int
    merge_size: int
    temporal_patch_size: int
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]

    @classmethod
    def from_processor(cls, image_processor) -> PatchLayout:
        return cls(
            patch_size=int(image_processor.patch_size),
            merge_size=int(image_processor.merge_size),
            temporal_patch_size=int(image_processor.temporal_patch_size),
            image_mean=tuple(float(v) for v in image_processor.image_mean),
            image_std=tuple(float(v) for v in image_processor.image_std),
        )

    @property
    def token_pixels(self) -> int:
        return self.patch_size * self.merge_size

    def _blocks(self, grid_thw: Sequence[int]) -> tuple[int, int, int]:
        t, h, w = (int(v) for v in grid_thw)
        if t != 1:
            raise ValueError(f"VEA highlights still images (grid t = 1), got grid {tuple(grid_thw)}")
        return h // self.merge_size, w // self.merge_size, self.merge_size

    def map_to_rows(self, pixel_map: torch.Tensor, grid_thw: Sequence[int]) -> torch.Tensor:
        """A ``[H, W]`` pixel map -> ``[patches, patch * patch]`` in ``pixel_values`` row order."""
        bh, bw, m = self._blocks(grid_thw)
        p = self.patch_size
        blocks = pixel_map.reshape(bh, m, p, bw, m, p).permute(0, 3, 1, 4, 2, 5)  # bh, bw, m, m, p, p
        return blocks.reshape(bh * bw * m * m, p * p)

    def rows_to_image(self, rows: torch.Tensor, grid_thw: Sequence[int]) -> torch.Tensor:
        """``pixel_values`` rows of one image -> ``[C, H, W]`` in [0, 1] (first temporal copy)."""
        bh, bw, m = self._blocks(grid_thw)
        p, t, c = self.patch_size, self.temporal_patch_size, len(self.image_mean)
        patches = rows.float().reshape(bh, bw, m, m, c, t, p, p)[..., 0, :, :]  # bh, bw, m, m, c, p, p
        image = patches.permute(4, 0, 2, 5, 1, 3, 6).reshape(c, bh * m * p, bw * m * p)
        mean = torch.tensor(self.image_mean, device=rows.device)[:, None, None]
        std = torch.tensor(self.image_std, device=rows.device)[:, None, None]
        return image * std + mean

    def highlight(
        self,
        pixel_values: torch.Tensor,
        image_grid_thw: torch.Tensor,
        pixel_maps: Sequence[torch.Tensor],
        highlight_strength: float,
    ) -> torch.Tensor:
        """Every image of a processed batch highlighted by its ``[H, W]`` map (:func:`highlight_pixel_values`)."""
        return highlight_pixel_values(pixel_values, image_grid_thw, pixel_maps, highlight_strength, self)

    def images(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor) -> list[torch.Tensor]:
        """Each image of a processed batch as the model sees it, ``[C, H, W]`` in [0, 1]."""
        images, start = [], 0
        for grid in image_grid_thw.tolist():
            count = int(grid[0] * grid[1] * grid[2])
            images.append(self.rows_to_image(pixel_values[start : start + count], grid))
            start += count
        return images


@dataclass(frozen=True)
class PlanarLayout:
    """Images as ``[images, C, H, W]`` planes (LLaVA-1.5's CLIP processor), one token per ``patch x patch`` square,
    values ``(x - mean) / std`` per channel with ``x`` in [0, 1]."""

    patch_size: int
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]

    @property
    def token_pixels(self) -> int:
        return self.patch_size

    def highlight(
        self,
        pixel_values: torch.Tensor,
        image_grid_thw: torch.Tensor | None,
        pixel_maps: Sequence[torch.Tensor],
        highlight_strength: float,
    ) -> torch.Tensor:
        """``x * g`` for every image, computed on the normalised values: ``v * g + (mean / std) * (g - 1)``."""
        del image_grid_thw  # every image is one plane of the batch
        if pixel_values.shape[0] != len(pixel_maps):
            raise ValueError(f"{pixel_values.shape[0]} images in the batch but {len(pixel_maps)} evidence maps")
        offsets = (torch.tensor(self.image_mean) / torch.tensor(self.image_std)).tolist()
        highlighted = torch.empty_like(pixel_values)
        for index, pixel_map in enumerate(pixel_maps):
            if tuple(pixel_map.shape) != tuple(pixel_values.shape[-2:]):
                raise ValueError(
                    f"evidence map {tuple(pixel_map.shape)} does not match image {tuple(pixel_values.shape[-2:])}"
                )
            gain = pixel_map.to(pixel_values.device, pixel_values.dtype, copy=True)
            gain.mul_(1.0 - highlight_strength).add_(highlight_strength)
            torch.mul(pixel_values[index], gain, out=highlighted[index])
            shift = gain - 1.0  # zero where the gain is 1: those values stay bit for bit
            for channel, offset in enumerate(offsets):
                highlighted[index, channel].add_(shift, alpha=offset)
        return highlighted

    def images(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor | None) -> list[torch.Tensor]:
        del image_grid_thw
        mean = torch.tensor(self.image_mean, device=pixel_values.device)[:, None, None]
        std = torch.tensor(self.image_std, device=pixel_values.device)[:, None, None]
        return [plane.float() * std + mean for plane in pixel_values]


def highlight_pixel_values(
    pixel_values: torch.Tensor,
    image_grid_thw: torch.Tensor,
    pixel_maps: Sequence[torch.Tensor],
    highlight_strength: float,
    layout: PatchLayout,
) -> torch.Tensor:
    """Highlight every image of a processed batch in place of re-processing it.

    With ``x`` in [0, 1] and ``v = (x - mean) / std``, the highlighted ``x * g`` normalises to
    ``v * g + (mean / std) * (g - 1)``: exact, and the identity where ``g = 1``.
    """
    grids = image_grid_thw.tolist()
    if len(grids) != len(pixel_maps):
        raise ValueError(f"{len(grids)} images in the batch but {len(pixel_maps)} evidence maps")
    channels, temporal, patch = len(layout.image_mean), layout.temporal_patch_size, layout.patch_size
    dtype, device = pixel_values.dtype, pixel_values.device
    offsets = (torch.tensor(layout.image_mean) / torch.tensor(layout.image_std)).tolist()
    highlighted = torch.empty_like(pixel_values)
    start = 0
    for grid, pixel_map in zip(grids, pixel_maps):
        count = int(grid[0] * grid[1] * grid[2])
        gain = pixel_map.to(device, dtype, copy=True).mul_(1.0 - highlight_strength).add_(highlight_strength)
        gain = layout.map_to_rows(gain, grid).view(count, 1, patch * patch)  # [patches, 1, p * p]
        values = pixel_values[start : start + count].view(count, channels, temporal, patch * patch)
        out = highlighted[start : start + count].view(count, channels, temporal, patch * patch)
        torch.mul(values, gain[:, None], out=out)
        shift = gain - 1.0  # zero where the gain is 1: those values stay bit for bit
        for channel, offset in enumerate(offsets):
            out[:, channel].add_(shift, alpha=offset)
        start += count
    if start != pixel_values.shape[0]:
        raise ValueError(f"image_grid_thw covers {start} patches but pixel_values has {pixel_values.shape[0]}")
    return highlighted


def as_uint8_image(image: torch.Tensor) -> np.ndarray:
    """``[C, H, W]`` in [0, 1] -> ``uint8 [H, W, C]`` (rounded) for logs and figures."""
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def top_layers(scores: Sequence[float], fraction: float) -> list[int]:
    """The ``ceil(fraction * L)`` best-scoring layers (at least one), ascending; NaN scores rank last."""
    if not 0 < fraction <= 1:
        raise ValueError(f"layer_top_fraction must be in (0, 1], got {fraction}")
    keep = max(1, math.ceil(fraction * len(scores)))
    ranked = sorted(range(len(scores)), key=lambda i: (math.isnan(scores[i]), -scores[i], i))
    return sorted(ranked[:keep])
