"""End to end: two tiny-checkpoint evaluations through the lmms-eval CLI with the attention log on, then the report
(``tests.support.evaluations.study_pair``)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from PIL import Image

from tests.support.evaluations import STUDY_PAIR_EXAMPLES, STUDY_PAIR_LIMIT, VSR_TASK

pytestmark = pytest.mark.slow


def test_the_report_pairs_every_document_of_the_two_runs(study_pair):
    """(That each number is the results JSON's: ``test_report_numbers.py``, on these runs.)"""
    accuracy = study_pair["summary"]["tasks"][VSR_TASK]["metrics"]["accuracy,none"]
    comparison = accuracy["comparisons"]["qwen3vl_adaptvis"]
    assert comparison["baseline"] == "qwen3vl"
    assert comparison["n"] == STUDY_PAIR_LIMIT and comparison["only_in_baseline"] == comparison["only_in_run"] == []


def test_every_png_is_valid_and_the_html_parses(study_pair):
    out, markdown = study_pair["report"], study_pair["md"]
    names = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", markdown)
    assert sum(n.startswith("layers_") for n in names) == 2
    assert sum(n.startswith("heatmap_") for n in names) == STUDY_PAIR_EXAMPLES
    for name in names:
        with Image.open(out / name) as image:
            assert image.format == "PNG"
            image.verify()
    images = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "img":
                images.append(dict(attrs)["src"])

    parser = Parser()
    parser.feed((out / "report.html").read_text())
    parser.close()
    assert len(images) == len(names) and all(src.startswith("data:image/png;base64,") for src in images)
    assert not any("original image not found" in line for line in study_pair["summary"]["skipped"])
