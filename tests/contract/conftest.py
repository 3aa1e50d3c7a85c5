"""Fixtures the contract tests share: each family's tiny checkpoint and its eager reference model.

A module that tests one family only overrides ``checkpoint``; ``reference`` then follows it.
"""

from __future__ import annotations

import pytest

from tests.support.environment import FAMILY_TYPES
from tests.support.reference import load_reference_model


@pytest.fixture(scope="module", params=FAMILY_TYPES)
def checkpoint(request, family_checkpoint):
    return family_checkpoint(request.param)


@pytest.fixture(scope="module")
def reference(checkpoint):
    return load_reference_model(checkpoint)
