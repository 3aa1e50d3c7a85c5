"""How each family's processor lays images out in ``pixel_values``, for VEA's highlighting and the attention log.

Qwen2-VL-style processors (Qwen3-VL, Qwen2.5-VL) flatten an image into rows of patches ordered by merge block
(:class:`PatchLayout`); CLIP's (LLaVA-1.5) keeps ``[images, C, H, W]`` planes (:class:`PlanarLayout`). Both give the
pixel side of one image token (``token_pixels``), highlight every image of a batch by its evidence map on the
normalised values (the method's step 5, ``interventions.vea.highlight_normalised``) and turn the values back into
images. The families answer ``pixel_layout(processor)`` with one of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from interventions.vea import highlight_gain, highlight_normalised


def channel_offsets(mean: Sequence[float], std: Sequence[float]) -> list[float]:
    """``mean / std`` per channel: what a gain adds back on normalised values (``highlight_normalised``)."""
    return (torch.tensor(mean) / torch.tensor(std)).tolist()


def unnormalise(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``[C, H, W]`` normalised values back to [0, 1]."""
    return (
        image * torch.tensor(std, device=image.device)[:, None, None]
        + torch.tensor(mean, device=image.device)[:, None, None]
    )


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
        return unnormalise(image, self.image_mean, self.image_std)

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
        """``x * g`` for every image, computed on the normalised values (``highlight_normalised``)."""
        del image_grid_thw  # every image is one plane of the batch
        if pixel_values.shape[0] != len(pixel_maps):
            raise ValueError(f"{pixel_values.shape[0]} images in the batch but {len(pixel_maps)} evidence maps")
        offsets = channel_offsets(self.image_mean, self.image_std)
        highlighted = torch.empty_like(pixel_values)
        for index, pixel_map in enumerate(pixel_maps):
            if tuple(pixel_map.shape) != tuple(pixel_values.shape[-2:]):
                raise ValueError(
                    f"evidence map {tuple(pixel_map.shape)} does not match image {tuple(pixel_values.shape[-2:])}"
                )
            gain = highlight_gain(pixel_map, highlight_strength, pixel_values)
            highlight_normalised(pixel_values[index], gain, offsets, highlighted[index], channel_dim=0)
        return highlighted

    def images(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor | None) -> list[torch.Tensor]:
        del image_grid_thw
        return [unnormalise(plane.float(), self.image_mean, self.image_std) for plane in pixel_values]


def highlight_pixel_values(
    pixel_values: torch.Tensor,
    image_grid_thw: torch.Tensor,
    pixel_maps: Sequence[torch.Tensor],
    highlight_strength: float,
    layout: PatchLayout,
) -> torch.Tensor:
    """Highlight every image of a processed batch in place of re-processing it (``highlight_normalised``)."""
    grids = image_grid_thw.tolist()
    if len(grids) != len(pixel_maps):
        raise ValueError(f"{len(grids)} images in the batch but {len(pixel_maps)} evidence maps")
    channels, temporal, patch = len(layout.image_mean), layout.temporal_patch_size, layout.patch_size
    offsets = channel_offsets(layout.image_mean, layout.image_std)
    highlighted = torch.empty_like(pixel_values)
    start = 0
    for grid, pixel_map in zip(grids, pixel_maps):
        count = int(grid[0] * grid[1] * grid[2])
        gain = layout.map_to_rows(highlight_gain(pixel_map, highlight_strength, pixel_values), grid).view(
            count, 1, patch * patch
        )  # [patches, 1, p * p]
        values = pixel_values[start : start + count].view(count, channels, temporal, patch * patch)
        out = highlighted[start : start + count].view(count, channels, temporal, patch * patch)
        highlight_normalised(values, gain, offsets, out, channel_dim=1)
        start += count
    if start != pixel_values.shape[0]:
        raise ValueError(f"image_grid_thw covers {start} patches but pixel_values has {pixel_values.shape[0]}")
    return highlighted
