"""How one image's run of image tokens folds into the grid its maps are drawn in.

Most families give an image one grid of tokens in row-major order, so a map is a reshape. LLaVA-NeXT gives it two
grids over the same image, one after the other: the base tile (the whole image squashed to 24 x 24 tokens) and the
stitched high-resolution tiles (unpadded to the image's aspect), whose every row ends in an ``image_newline`` token
that covers no cell. :class:`ImageTokens` says which; :func:`fold_image_tokens` turns per-token values (attention
mass, evidence) into one map per image on the finest grid, adding what every other grid holds after spreading each of
its cells over the map's cells it overlaps (area-weighted, so a map's total is the tokens' total less the no-cell
tokens'). The methods' maps (VEA's evidence, the attention log) are then the same math on every family.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TokenGrid:
    """``rows x columns`` tokens in row-major order, each row followed by ``trailing`` tokens with no cell."""

    rows: int
    columns: int
    trailing: int = 0

    @property
    def tokens(self) -> int:
        return self.rows * (self.columns + self.trailing)


@dataclass(frozen=True)
class ImageTokens:
    """One image's tokens: the ``grid`` (rows, columns) its maps are drawn in, and its token ``parts`` in prompt
    order, each covering the whole of the map's region."""

    grid: tuple[int, int]
    parts: tuple[TokenGrid, ...]

    @classmethod
    def single(cls, rows: int, columns: int) -> ImageTokens:
        """The common case: the tokens are the map's cells, row-major."""
        return cls((rows, columns), (TokenGrid(rows, columns),))

    @property
    def tokens(self) -> int:
        return sum(part.tokens for part in self.parts)

    def cells(self) -> list[tuple[int, int, int] | None]:
        """Per token, in prompt order: ``(part, row, column)`` of its cell in its own grid, or None (no cell)."""
        cells: list[tuple[int, int, int] | None] = []
        for index, part in enumerate(self.parts):
            for row in range(part.rows):
                cells += [(index, row, column) for column in range(part.columns)] + [None] * part.trailing
        return cells

    @property
    def is_single(self) -> bool:
        return len(self.parts) == 1 and self.parts[0] == TokenGrid(*self.grid)


def overlap_fractions(target: int, source: int) -> torch.Tensor:
    """``[target, source]``: the fraction of source interval ``j`` (of ``source`` equal parts of [0, 1]) that lies in
    target interval ``i`` (of ``target`` equal parts); every column sums to 1."""
    edges_t = torch.arange(target + 1, dtype=torch.float64) / target
    edges_s = torch.arange(source + 1, dtype=torch.float64) / source
    low = torch.maximum(edges_t[:-1, None], edges_s[None, :-1])
    high = torch.minimum(edges_t[1:, None], edges_s[None, 1:])
    return (high - low).clamp(min=0) * source


def fold_image_tokens(values: torch.Tensor, image: ImageTokens) -> torch.Tensor:
    """``values [..., image.tokens]`` (one image's tokens in prompt order) -> ``[..., rows, columns]`` on its grid.

    A single grid is a reshape (bit for bit). Otherwise each part's cells are spread over the map's cells by area and
    added; tokens with no cell (``trailing``) are dropped.
    """
    if values.shape[-1] != image.tokens:
        raise ValueError(
            f"{values.shape[-1]} image tokens given but the image's token layout {image} has {image.tokens}"
        )
    rows, columns = image.grid
    lead = values.shape[:-1]
    if image.is_single:
        return values.reshape(*lead, rows, columns)
    out = torch.zeros(*lead, rows, columns, dtype=torch.float64, device=values.device)
    start = 0
    for part in image.parts:
        chunk = values[..., start : start + part.tokens].double()
        start += part.tokens
        cells = chunk.reshape(*lead, part.rows, part.columns + part.trailing)[..., : part.columns]
        if (part.rows, part.columns) != (rows, columns):
            down = overlap_fractions(rows, part.rows).to(values.device)
            across = overlap_fractions(columns, part.columns).to(values.device)
            cells = down @ cells @ across.T
        out = out + cells
    return out.to(values.dtype)


def fold_images(values: torch.Tensor, images: Sequence[ImageTokens]) -> list[torch.Tensor]:
    """One sequence's ``values [..., n_image_tokens]`` (images in prompt order) -> one map per image."""
    sizes = [image.tokens for image in images]
    if sum(sizes) != values.shape[-1]:
        raise ValueError(
            f"{values.shape[-1]} image tokens recorded but the images' token layouts need {sum(sizes)} "
            f"({', '.join(str(size) for size in sizes)})"
        )
    return [fold_image_tokens(part, image) for part, image in zip(torch.split(values, sizes, dim=-1), images)]
