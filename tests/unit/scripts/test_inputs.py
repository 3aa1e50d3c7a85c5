"""A study's input checks name what is missing before anything runs: here, the NLTK data CHAIR's scorer reads."""

from __future__ import annotations

import re
import sys

import nltk

from tests.support.environment import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
from inputs import check_nltk_data  # noqa: E402  (scripts/ is not a package)


def test_chair_without_nltk_data_is_refused_with_the_download_command(tmp_path, monkeypatch):
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])  # an empty data folder: nothing can be found
    problems = check_nltk_data(["pope_random", "coco_cap_chair", "pope_adv"])
    assert len(problems) == 1
    found = re.fullmatch(
        r"coco_cap_chair: lmms-eval scores it with NLTK, whose data is missing here \((.+)\): "
        r"python -m nltk.downloader (.+) \(or export NLTK_DATA=/path/to/nltk_data\)",
        problems[0],
    )
    assert found, problems[0]
    resources = found.group(1).split(", ")
    assert found.group(2).split() == resources  # the command fetches exactly what is missing
    # one resource per call of the scorer: the tokenizer, the tagger (names vary with NLTK's version) and WordNet
    assert len(resources) == 3 and resources[2] == "wordnet", resources


def test_tasks_scored_without_nltk_need_none_of_its_data(tmp_path, monkeypatch):
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    assert check_nltk_data(["pope_random", "pope_pop", "mmmu_val"]) == []
