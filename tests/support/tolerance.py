"""How close a float32 result must come to its reference: always stated against the size of what is compared.

Fused SDPA and eager attention add in different orders, and so do a CPU's kernels (AVX-512, AVX2 or the generic ones,
MKL's instruction sets, one thread or two): two float32 computations of the same value differ by rounding, and rounding
is relative to the size of the values rounded. So a comparison with the eager reference allows an absolute difference
of ``FLOAT32_RELATIVE`` times the reference's largest magnitude, never a constant tuned on one machine. 1e-5 of the
magnitude is 84 float32 ulps (2^-24 each), room for the rounding of a tiny model's few layers; under five kernel
settings (the CPU's own, ``ATEN_CPU_CAPABILITY=default``, AVX2 kernels with ``MKL_ENABLE_INSTRUCTIONS=AVX2``, generic
ones with MKL's SSE4.2 path, two threads) the measured differences of logits, probabilities and attention rows stayed
within 1.0e-6 of their magnitude (docs/DEVELOPMENT.md, "Tolerances").

A value derived from such results through a non-linear step gets the tolerance carried through that step's
sensitivity (:func:`entropy_tolerance`), not a new constant.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

FLOAT32_RELATIVE = 1e-5
# values stored in float16 (the attention log's maps): two float32 values within FLOAT32_RELATIVE of each other may
# round to neighbouring float16 values, one float16 ulp (at most 2^-10 of the magnitude) further apart
FLOAT16_STORED = 2.0**-10 + FLOAT32_RELATIVE


def magnitude(reference: Any) -> float:
    """The largest absolute value of ``reference`` (a tensor, array, list or number)."""
    values = (
        reference.detach().double()
        if isinstance(reference, torch.Tensor)
        else torch.as_tensor(np.asarray(reference, dtype=np.float64))
    )
    return float(values.abs().max()) if values.numel() else 0.0


def tolerance(reference: Any, relative: float = FLOAT32_RELATIVE) -> float:
    """The absolute difference allowed against ``reference``: ``relative`` x its largest magnitude."""
    return relative * magnitude(reference)


def assert_matches_reference(got: Any, reference: Any, relative: float = FLOAT32_RELATIVE) -> None:
    """``got`` equals ``reference`` within :func:`tolerance` (element-wise, absolute, no relative term)."""
    got = got if isinstance(got, torch.Tensor) else torch.as_tensor(np.asarray(got, dtype=np.float64))
    expected = (
        reference if isinstance(reference, torch.Tensor) else torch.as_tensor(np.asarray(reference, dtype=np.float64))
    )
    allowed = tolerance(expected, relative)
    torch.testing.assert_close(
        got.double(),
        expected.double(),
        atol=allowed,
        rtol=0,
        msg=lambda message: f"{message}\n(allowed: {relative:g} x the reference's magnitude {magnitude(expected):.4g})",
    )


def entropy_tolerance(lens_logits: torch.Tensor, top_k: int, relative: float = FLOAT32_RELATIVE) -> torch.Tensor:
    """The difference allowed in CLVS' normalised top-k entropy, per row, carried from the logits' own tolerance.

    ``H = -sum(p log p) / log k`` over ``p = softmax(z)``, ``z`` the top-k of the logit lens ``[..., V]``. Its gradient
    is ``dH/dz_j = -p_j (log p_j + H_nat) / log k`` (``H_nat`` the entropy in nats), so a change of at most ``d`` in
    every logit moves ``H`` by at most ``d * sum_j p_j |log p_j + H_nat| / log k``; ``d`` is the logits' tolerance,
    ``relative`` x their largest magnitude (over the whole vocabulary: a logit's rounding follows its matmul's size).
    The entropy's own float32 computation adds ``relative`` x ``H``: near a uniform top-k the sensitivity vanishes
    and that rounding is all that is left.
    """
    logits = lens_logits.detach().double()
    log_p = torch.log_softmax(logits.topk(top_k, dim=-1).values, dim=-1)
    p = log_p.exp()
    nats = -(p * log_p).sum(dim=-1, keepdim=True)
    sensitivity = (p * (log_p + nats).abs()).sum(dim=-1) / math.log(top_k)
    entropy = nats.squeeze(-1) / math.log(top_k)
    return sensitivity * relative * logits.abs().amax(dim=-1) + relative * entropy
