"""Shared fixtures: a tiny Qwen3-VL checkpoint and a VSR data folder with generated images.

Nothing is downloaded: the checkpoint is built by ``models.tiny`` and the VSR
rows are the real annotation files from ``../shared/vsr`` (``VSR_SHARED_DIR``
overrides), with random images generated for the rows the tests evaluate.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import build_trained_checkpoint, build_vsr_data_dir, require, shared_vsr_dir


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from models.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "checkpoint")


@pytest.fixture(scope="session")
def vsr_data_dir(tmp_path_factory) -> Path:
    """Real VSR splits; images exist for the first 16 rows of dev/test and 64 of train."""
    return build_vsr_data_dir(tmp_path_factory.mktemp("vsr") / "data", shared_vsr_dir())


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, synthetic data folder): an 8-layer tiny model fine-tuned so AdaptVis and CLVS decide for real."""
    return build_trained_checkpoint(tmp_path_factory.mktemp("trained"))


@pytest.fixture(scope="session")
def qwen_checkpoint(tmp_path_factory) -> Path:
    """The tiny architecture with the real Qwen vocabulary, chat template and preprocessor (``--tokenizer qwen``)."""
    from models.qwen_tokenizer import MissingQwenRanks
    from models.tiny import build_tiny_checkpoint

    try:
        return build_tiny_checkpoint(tmp_path_factory.mktemp("qwen") / "checkpoint", tokenizer="qwen")
    except MissingQwenRanks as error:
        require(False, str(error))
