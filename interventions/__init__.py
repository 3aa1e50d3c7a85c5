"""Attention interventions on a vision-language model's fused attention (AdaptVis, CLVS, PAI, VAF; VEA reads
attention), for every supported family: the math here knows no family (``families`` adapts each model to it).

The mechanism: :mod:`interventions.attention` (one registered attention function),
:mod:`interventions.state` (the scoped per-forward state), :mod:`interventions.recording`
(last-row attention recording). One module per method. Knows nothing of lmms-eval.
"""

from interventions.attention import ATTENTION_NAME, steer, use_steered_attention
from interventions.recording import LastRowRecorder, record_image_attention
from interventions.state import LastRow, RowEdit, SteeringState, active_state

__all__ = [
    "ATTENTION_NAME",
    "LastRow",
    "LastRowRecorder",
    "RowEdit",
    "SteeringState",
    "active_state",
    "record_image_attention",
    "steer",
    "use_steered_attention",
]
