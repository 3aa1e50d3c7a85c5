"""Shared fixtures: a tiny Qwen3-VL checkpoint and a VSR data folder with generated images.

Nothing is downloaded and nothing outside the clone is read: the checkpoint is built by ``testbed.tiny`` and the VSR
rows are the real annotation files the package ships (``vsr_tasks/annotations``), with random images generated for
the rows the tests evaluate.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# Read once, at import, by huggingface_hub and datasets: set before any test module imports them, so that the
# command lines the tests run in this process (tests.support.inprocess) see the environment a subprocess would.
os.environ.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
# no answer cache unless a test names one (answer_cache=DIR): a rerun in a test must compute, and nothing is written
# to the user's ~/.cache
os.environ["VSR_ANSWER_CACHE"] = "none"
if "HF_DATASETS_CACHE" not in os.environ:
    _DATASETS_CACHE = tempfile.mkdtemp(prefix="vsr-tests-datasets-")
    os.environ["HF_DATASETS_CACHE"] = _DATASETS_CACHE
    atexit.register(shutil.rmtree, _DATASETS_CACHE, ignore_errors=True)

import pytest

from tests.support.data import build_vsr_data_dir
from tests.support.environment import built_once, require
from tests.support.training import build_trained_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from testbed.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "checkpoint")


@pytest.fixture(scope="session")
def vsr_data_dir(tmp_path_factory) -> Path:
    """A VSR_DATA_DIR holding images only (the rows are the packaged splits, as a user's would be): images exist for
    the first 16 rows of dev/test and 64 of train."""
    return build_vsr_data_dir(tmp_path_factory.mktemp("vsr") / "data")


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory):
    """``trained_checkpoint(family) -> (checkpoint, synthetic data folder)``: an 8-layer tiny model of ``family``
    fine-tuned so AdaptVis and CLVS decide for real (``tests.support.training.build_trained_checkpoint``). Each is built once per
    test run and shared by every worker (they are the suite's most expensive fixtures)."""

    def build(family: str) -> tuple[Path, Path]:
        name = "trained" if family == "qwen3_vl" else f"trained-{family}"
        checkpoint, data = built_once(
            tmp_path_factory, name, lambda root: build_trained_checkpoint(root, family=family)
        )
        return Path(checkpoint), Path(data)

    return build


@pytest.fixture(scope="session")
def trained(trained_checkpoint) -> tuple[Path, Path]:
    """The trained Qwen3-VL (checkpoint, synthetic data folder)."""
    return trained_checkpoint("qwen3_vl")


@pytest.fixture(scope="session")
def family_checkpoint(tmp_path_factory, tiny_checkpoint):
    """``family_checkpoint(family, tokenizer="bytes") -> Path``: the tiny random checkpoint of ``family`` (built once
    per worker). ``words`` gives a word-level vocabulary, whose random answers are distinct words where random
    bytes often decode to the same replacement character."""
    from testbed.tiny import build_tiny_checkpoint

    built = {("qwen3_vl", "bytes"): tiny_checkpoint}

    def build(family: str, tokenizer: str = "bytes") -> Path:
        if (family, tokenizer) not in built:
            folder = tmp_path_factory.mktemp(f"{family}_{tokenizer}") / "checkpoint"
            built[family, tokenizer] = build_tiny_checkpoint(folder, family=family, tokenizer=tokenizer)
        return built[family, tokenizer]

    return build


@pytest.fixture(scope="session")
def qwen_checkpoint(tmp_path_factory) -> Path:
    """The tiny architecture with the real Qwen vocabulary, chat template and preprocessor (``--tokenizer qwen``)."""
    from testbed.qwen_tokenizer import MissingQwenRanks
    from testbed.tiny import build_tiny_checkpoint

    try:
        return build_tiny_checkpoint(tmp_path_factory.mktemp("qwen") / "checkpoint", tokenizer="qwen")
    except MissingQwenRanks as error:
        require(False, str(error))
