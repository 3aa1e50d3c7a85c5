"""AdaptVis' confidence rules against values computed by hand (the authors' code: np.round(..., 2) of a probability
on WhatsUp, of the raw top-1 logit on VSR)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from interventions.adaptvis import CONFIDENCE_RULES, AdaptVisParams
from tests.support.tolerance import assert_matches_reference

# sequence 0: probabilities (0.396, 0.302, 0.302); sequence 1: logits (0.3949, -5, -5)
LOGITS = torch.tensor([[math.log(0.396), math.log(0.302), math.log(0.302)], [0.3949, -5.0, -5.0]])
TOP_PROBABILITY_1 = math.exp(0.3949) / (math.exp(0.3949) + 2 * math.exp(-5.0))


@pytest.mark.parametrize(
    ("rule", "expected", "alphas"),
    [
        ("probability", [0.396, TOP_PROBABILITY_1], [0.5, 1.5]),  # 0.396 < 0.4: smoothen
        ("probability_rounded", [0.40, round(TOP_PROBABILITY_1, 2)], [1.5, 1.5]),  # 0.396 -> 0.40 >= 0.4: sharpen
        ("max_logit_rounded", [round(math.log(0.396), 2), 0.39], [0.5, 0.5]),  # raw logits, rounded
    ],
)
def test_each_rule_gives_its_confidence_and_decision(rule, expected, alphas):
    params = AdaptVisParams(confidence_threshold=0.4, smoothen_weight=0.5, sharpen_weight=1.5, confidence_rule=rule)
    confidence = params.confidence(LOGITS)
    assert_matches_reference(confidence, expected)
    assert params.alphas(confidence) == alphas


def test_rounding_is_numpys():
    values = torch.tensor([0.396, 0.3949, 0.125, 0.135, 0.999, -0.9263], dtype=torch.float64)
    rounded = CONFIDENCE_RULES["max_logit_rounded"](values[:, None])  # one logit per row: the max is the value
    assert rounded.tolist() == np.round(values.numpy(), 2).tolist()


def test_an_unknown_rule_is_refused_by_name():
    with pytest.raises(ValueError, match="confidence_rule must be one of probability, probability_rounded"):
        AdaptVisParams(confidence_rule="logit")
