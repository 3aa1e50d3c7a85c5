"""How each family's processor lays images out in ``pixel_values``, for VEA's highlighting and the attention log.

Qwen2-VL-style processors (Qwen3-VL, Qwen2.5-VL) flatten an image into rows of patches ordered by merge block
(:class:`PatchLayout`); CLIP's (LLaVA-1.5) and Gemma-3's keep ``[images, C, H, W]`` planes (:class:`PlanarLayout`);
LLaVA-NeXT's keep a base tile and high-resolution tiles per image (:class:`AnyResLayout`). Each gives the
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

    geometry_key = "image_grid_thw"  # the processor output that says where each image's values are

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

    geometry_key = "image_grid_thw"  # absent from these processors' outputs: every image is one plane

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


@dataclass(frozen=True)
class AnyResGeometry:
    """Where one image lies in LLaVA-NeXT's high-resolution canvas, and which canvas tokens the model keeps.

    Read from transformers' own processor and model functions (``select_best_resolution``,
    ``get_patch_output_size``, ``unpad_image``), so that it is the geometry the checkpoint runs, not a copy of it.
    """

    tile: int  # the tower's square input (336 px): the base tile's side and every tile's
    patch: int  # pixels per token side (14)
    canvas: tuple[int, int]  # (height, width) chosen among the pinpoints
    resized: tuple[int, int]  # (height, width) of the image inside the canvas (aspect kept)
    paste: tuple[int, int]  # (left, top) of the image in the canvas; the rest is black padding
    kept_first: tuple[int, int]  # (row, column) of the first kept token in the canvas' token grid
    kept_rows: int
    kept_columns: int

    @property
    def tiles(self) -> tuple[int, int]:
        """(down, across): the canvas' tiles, row-major in ``pixel_values`` after the base tile."""
        return self.canvas[0] // self.tile, self.canvas[1] // self.tile

    @property
    def kept_canvas_box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1): the kept tokens' pixels in the canvas."""
        row, column = self.kept_first
        return (
            column * self.patch,
            row * self.patch,
            (column + self.kept_columns) * self.patch,
            (row + self.kept_rows) * self.patch,
        )


def anyres_geometry(processor, height: int, width: int) -> AnyResGeometry:
    """The geometry of an image of ``height x width`` pixels under a LLaVA-NeXT processor."""
    import numpy as np
    from transformers.image_processing_utils import get_patch_output_size, select_best_resolution
    from transformers.image_utils import ChannelDimension
    from transformers.models.llava_next.modeling_llava_next import unpad_image

    image_processor = processor.image_processor
    crop = dict(image_processor.crop_size or {})
    size = dict(image_processor.size)
    tile = int(crop.get("height") or size.get("height") or size["shortest_edge"])
    patch = int(processor.patch_size)
    canvas = tuple(int(v) for v in select_best_resolution((height, width), image_processor.image_grid_pinpoints))
    shape = np.broadcast_to(np.uint8(0), (height, width, 1))  # only its size is read
    resized = tuple(int(v) for v in get_patch_output_size(shape, canvas, ChannelDimension.LAST))
    paste = ((canvas[1] - resized[1]) // 2, (canvas[0] - resized[0]) // 2)
    rows, columns = canvas[0] // patch, canvas[1] // patch
    index = torch.arange(rows * columns).view(1, rows, columns)
    kept = unpad_image(index, (height, width))  # the model's own unpadding, on token indices
    first = int(kept[0, 0, 0])
    return AnyResGeometry(
        tile=tile,
        patch=patch,
        canvas=canvas,
        resized=resized,
        paste=paste,
        kept_first=(first // columns, first % columns),
        kept_rows=int(kept.shape[1]),
        kept_columns=int(kept.shape[2]),
    )


@dataclass(frozen=True)
class AnyResLayout:
    """LLaVA-NeXT's ``pixel_values [images, tiles, C, tile, tile]``: per image the base tile (the whole image
    squashed to a square), then the canvas' tiles row-major, then zero tiles up to the batch's most; values
    ``(x - mean) / std`` per channel with ``x`` in [0, 1]. An evidence map covers the kept high-resolution tokens
    (``token_pixels`` = one token's canvas pixels)."""

    processor: object
    patch_size: int
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]

    geometry_key = "image_sizes"

    @classmethod
    def from_processor(cls, processor) -> AnyResLayout:
        image_processor = processor.image_processor
        return cls(
            processor=processor,
            patch_size=int(processor.patch_size),
            image_mean=tuple(float(v) for v in image_processor.image_mean),
            image_std=tuple(float(v) for v in image_processor.image_std),
        )

    @property
    def token_pixels(self) -> int:
        return self.patch_size

    def _geometries(self, pixel_values: torch.Tensor, image_sizes: torch.Tensor, count: int) -> list[AnyResGeometry]:
        if image_sizes is None or len(image_sizes) != pixel_values.shape[0] or pixel_values.shape[0] != count:
            raise ValueError(
                f"{pixel_values.shape[0]} images in the batch, {0 if image_sizes is None else len(image_sizes)} "
                f"image sizes and {count} evidence maps or images"
            )
        return [anyres_geometry(self.processor, int(h), int(w)) for h, w in image_sizes.tolist()]

    def canvas_gain(self, geometry: AnyResGeometry, gain: torch.Tensor) -> torch.Tensor:
        """The gain over the whole canvas: the map on the kept tokens' pixels, its edge values beyond them (image
        pixels whose token rows the unpadding dropped; on the black padding any gain leaves the value as it is)."""
        x0, y0, x1, y1 = geometry.kept_canvas_box
        height, width = geometry.canvas
        if tuple(gain.shape) != (y1 - y0, x1 - x0):
            raise ValueError(f"evidence map {tuple(gain.shape)} does not match the kept tokens' {(y1 - y0, x1 - x0)}")
        padded = torch.nn.functional.pad(gain[None, None], (x0, width - x1, y0, height - y1), mode="replicate")
        return padded[0, 0]

    def highlight(
        self,
        pixel_values: torch.Tensor,
        image_sizes: torch.Tensor | None,
        pixel_maps: Sequence[torch.Tensor],
        highlight_strength: float,
    ) -> torch.Tensor:
        """``x * g`` on the base tile (the map resized to it) and on every tile (the map placed on the canvas)."""
        geometries = self._geometries(pixel_values, image_sizes, len(pixel_maps))
        offsets = channel_offsets(self.image_mean, self.image_std)
        highlighted = pixel_values.clone()
        for index, (geometry, pixel_map) in enumerate(zip(geometries, pixel_maps)):
            gain = highlight_gain(pixel_map, highlight_strength, pixel_values)
            base = torch.nn.functional.interpolate(
                gain[None, None].float(), size=(geometry.tile, geometry.tile), mode="bilinear", align_corners=False
            )[0, 0].to(gain.dtype)
            highlight_normalised(pixel_values[index, 0], base, offsets, highlighted[index, 0], channel_dim=0)
            canvas = self.canvas_gain(geometry, gain)
            down, across = geometry.tiles
            for row in range(down):
                for column in range(across):
                    k = 1 + row * across + column
                    part = canvas[row * geometry.tile : (row + 1) * geometry.tile,
                                  column * geometry.tile : (column + 1) * geometry.tile]  # fmt: skip
                    highlight_normalised(pixel_values[index, k], part, offsets, highlighted[index, k], channel_dim=0)
        return highlighted

    def images(self, pixel_values: torch.Tensor, image_sizes: torch.Tensor | None) -> list[torch.Tensor]:
        """Per image, the kept high-resolution view as the model saw it: the canvas from its tiles, cut to the kept
        tokens, in [0, 1]."""
        geometries = self._geometries(pixel_values, image_sizes, pixel_values.shape[0])
        views = []
        for index, geometry in enumerate(geometries):
            down, across = geometry.tiles
            tiles = pixel_values[index, 1 : 1 + down * across].float()
            channels, side = tiles.shape[1], geometry.tile
            canvas = tiles.view(down, across, channels, side, side).permute(2, 0, 3, 1, 4)
            canvas = canvas.reshape(channels, down * side, across * side)
            x0, y0, x1, y1 = geometry.kept_canvas_box
            views.append(unnormalise(canvas[:, y0:y1, x0:x1], self.image_mean, self.image_std))
        return views

    def images_of_base(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """Per image, the base tile (the whole image squashed to the tower's square) in [0, 1]."""
        return [unnormalise(values[0].float(), self.image_mean, self.image_std) for values in pixel_values]
