"""The one error of profiling: the message names the file, split or argument to fix."""

from __future__ import annotations

from models.vea_layers import LayerSourceError


class ProfilingError(LayerSourceError):
    """Profiling cannot run. A kind of the layer-source error, so VEA's first-use profiling reports it as it reports a
    missing layers file: naming the model (``models.vea_layers``)."""
