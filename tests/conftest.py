"""Shared fixtures: a tiny Qwen3-VL checkpoint and a VSR data folder with generated images.

Nothing is downloaded: the checkpoint is built by ``testbed.tiny`` and the VSR
rows are the real annotation files from ``../shared/vsr`` (``VSR_SHARED_DIR``
overrides), with random images generated for the rows the tests evaluate.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# Read once, at import, by huggingface_hub and datasets: set before any test module imports them, so that the
# command lines the tests run in this process (tests.inprocess) see the environment a subprocess would.
os.environ.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
if "HF_DATASETS_CACHE" not in os.environ:
    _DATASETS_CACHE = tempfile.mkdtemp(prefix="vsr-tests-datasets-")
    os.environ["HF_DATASETS_CACHE"] = _DATASETS_CACHE
    atexit.register(shutil.rmtree, _DATASETS_CACHE, ignore_errors=True)

import pytest

from tests.helpers import (
    build_trained_checkpoint,
    build_vsr_data_dir,
    built_once,
    missing_shared_vsr_message,
    require,
    shared_vsr_dir,
)


def pytest_configure(config: pytest.Config) -> None:
    """Stop at once, with one message naming the variable to set, when the real VSR files are missing."""
    problem = missing_shared_vsr_message()
    if problem is not None:
        pytest.exit(problem, returncode=4)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from testbed.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "checkpoint")


@pytest.fixture(scope="session")
def vsr_data_dir(tmp_path_factory) -> Path:
    """Real VSR splits; images exist for the first 16 rows of dev/test and 64 of train."""
    return build_vsr_data_dir(tmp_path_factory.mktemp("vsr") / "data", shared_vsr_dir())


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, synthetic data folder): an 8-layer tiny model fine-tuned so AdaptVis and CLVS decide for real.

    Built once per test run and shared by every worker (it is the suite's most expensive fixture)."""
    checkpoint, data = built_once(tmp_path_factory, "trained", build_trained_checkpoint)
    return Path(checkpoint), Path(data)


@pytest.fixture(scope="session")
def qwen_checkpoint(tmp_path_factory) -> Path:
    """The tiny architecture with the real Qwen vocabulary, chat template and preprocessor (``--tokenizer qwen``)."""
    from testbed.qwen_tokenizer import MissingQwenRanks
    from testbed.tiny import build_tiny_checkpoint

    try:
        return build_tiny_checkpoint(tmp_path_factory.mktemp("qwen") / "checkpoint", tokenizer="qwen")
    except MissingQwenRanks as error:
        require(False, str(error))
