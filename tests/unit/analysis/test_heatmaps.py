"""Heatmap regions: drawn over the file on disk, in its pixels, whatever size the model got."""

from __future__ import annotations

import pytest
from transformers import AutoProcessor

from analysis.heatmaps import Panel
from families import family_for
from models.attention_log import AttentionRecord
from vsr_tasks.adaptvis_protocol import IMAGE_SIZE


def _panel(regions: list[list[float]] | None, sizes: list[list[int]] | None) -> Panel:
    record = AttentionRecord(
        task="t", doc_id=0, model="m", num_layers=1, image_mass=None, text_mass=None,
        image_mass_before=None, text_mass_before=None, image_regions=regions, image_sizes=sizes,
    )  # fmt: skip
    region, frame = record.cover(0)
    return Panel(title="t", region=region, region_frame=frame)


def test_a_region_logged_on_the_resized_input_is_drawn_over_the_file_in_its_pixels(family_checkpoint):
    """The VSR-protocol tasks give LLaVA-1.5 a 2300 x 4096 copy of a 64 x 48 file: the processor keeps the copy's
    centre square, which on the file is the full-width band between rows 48 * 898 / 4096 and 48 * 3198 / 4096."""
    checkpoint = family_checkpoint("llava")
    processor = AutoProcessor.from_pretrained(str(checkpoint))
    [region] = family_for(str(checkpoint)).image_regions(processor, [IMAGE_SIZE])
    panel = _panel([list(region)], [list(IMAGE_SIZE)])
    band = (4096 - 2300) / 2
    assert panel.region_on(64, 48) == pytest.approx((0.0, 48 * band / 4096, 64.0, 48 * (4096 - band) / 4096))


def test_without_a_resize_or_a_logged_size_the_region_is_drawn_as_logged():
    assert _panel([[0.0, 6.0, 64.0, 42.0]], [[64, 48]]).region_on(64, 48) == (0.0, 6.0, 64.0, 42.0)
    assert _panel([[0.0, 6.0, 64.0, 42.0]], None).region_on(640, 480) == (0.0, 6.0, 64.0, 42.0)  # an older log
    assert _panel(None, None).region_on(640, 480) == (0.0, 0.0, 640.0, 480.0)
