"""``--dim_share S``: a share of the train rows seen dimmed outside a random region, as VEA shows images.

Why: VEA answers on its highlighted image, every pixel multiplied by ``h + (1 - h) * map`` (the map in [0, 1]
from where the model looked, ``h`` the ``highlight_strength``). A model trained only on full-brightness images
has never seen such an image, so VEA's accuracy would measure that distribution shift rather than the method.
With this option a fixed share of the train rows is always shown dimmed the same way: a Gaussian region at a
random place and size, min-max normalised to [0, 1], ``h`` drawn from ``--dim_strength`` (VEA's own range:
0.5 on the random split, 0.2 on zeroshot). Which rows, and each row's region and ``h``, depend only on
``--seed`` and the row, so a run is reproducible and a resumed one identical. Held-out rows are never dimmed,
and dev and test never pass through fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

SIGMA_RANGE = (0.15, 0.5)  # region size, as a fraction of the image's short side


@dataclass(frozen=True)
class DimAugmentation:
    share: float
    strength: tuple[float, float]  # the range of h (the brightness kept where the map is 0)
    seed: int

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"--dim_share must be in [0, 1], got {self.share}")
        low, high = self.strength
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"--dim_strength must be LOW,HIGH with 0 <= LOW <= HIGH <= 1, got {low},{high}")

    def _rng(self, row: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, row, 0x5EA])

    def gain(self, row: int, width: int, height: int) -> np.ndarray | None:
        """The ``[height, width]`` multiplier of train row ``row`` (None: the row is shown as it is)."""
        rng = self._rng(row)
        if rng.random() >= self.share:
            return None
        strength = rng.uniform(*self.strength)
        centre_x, centre_y = rng.uniform(0, width), rng.uniform(0, height)
        sigma = rng.uniform(*SIGMA_RANGE) * min(width, height)
        ys, xs = np.mgrid[0:height, 0:width]
        region = np.exp(-((xs - centre_x) ** 2 + (ys - centre_y) ** 2) / (2 * sigma**2))
        region = (region - region.min()) / max(region.max() - region.min(), 1e-12)
        return strength + (1.0 - strength) * region

    def __call__(self, image: Image.Image, row: int) -> Image.Image:
        gain = self.gain(row, *image.size)
        if gain is None:
            return image
        pixels = np.asarray(image.convert("RGB"), dtype=np.float64) * gain[..., None]
        return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))


def parse_strength(text: str) -> tuple[float, float]:
    """``"0.2,0.5"`` -> (0.2, 0.5); one number is a fixed strength."""
    try:
        parts = [float(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise ValueError(f"--dim_strength must be LOW,HIGH (e.g. 0.2,0.5), got {text!r}")
    return parts[0], parts[1]
