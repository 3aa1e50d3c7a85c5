"""A method's declaration: what every part of the project knows of it without running it.

One :class:`MethodSpec` per method, declared in the method's own file (``models/adaptvis.py``, ...) beside its runner
and gathered by the registry (``models.methods``). The spec names its runner class; the runner is handed its spec
when the engine builds it (``models.loading``), so the reference points one way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from models.names import SCHEMES

if TYPE_CHECKING:  # the runner imports this module; the annotation alone needs the class
    from models.runner import MethodRunner


@dataclass(frozen=True)
class Argument:
    """A model argument: its default and what it means. ``shown`` is the docs' default when it is found at run time
    (an environment variable, a folder); ``group`` places it in a second table (VEA's profiling arguments)."""

    name: str
    default: Any
    meaning: str
    shown: str | None = None
    group: str = ""


@dataclass(frozen=True)
class MethodSpec:
    """One intervention, as every part of the project sees it (the runtime object a forward consults is
    ``interventions.state.RowEditor``)."""

    name: str
    title: str
    params: type
    meanings: Mapping[str, str]  # parameter -> meaning, for every field of ``params``
    extra: tuple[Argument, ...]  # the method's other model arguments, after the parameters
    sweepable: tuple[str, ...]
    sliders: Mapping[str, tuple[float, float, float]]  # parameter -> (minimum, maximum, step) in the viewer
    runner: type[MethodRunner]  # how the engine runs it; built with this spec (``MethodRunner.__init__``)
    exclusive: tuple[str, ...] = ()  # arguments that are alternatives: any explicit one replaces a preset's
    needs_image_grid: bool = False  # whether it maps image tokens to cells of each image (not just finds them)
    summary: str = ""

    def __post_init__(self) -> None:
        fields = [f.name for f in dataclasses.fields(self.params)]
        if list(self.meanings) != fields:
            raise ValueError(f"{self.name}: meanings must describe {fields} in that order, got {list(self.meanings)}")

    @property
    def models(self) -> tuple[str, ...]:
        """The method's model under each naming scheme (``qwen3vl_<name>``, ``vlm_<name>``)."""
        return tuple(scheme.name(self.name) for scheme in SCHEMES)

    @property
    def neutral(self) -> dict[str, Any]:
        """The setting that cannot change an answer (the paired baseline of every sweep)."""
        return dict(self.params.NEUTRAL)

    def arguments(self) -> list[Argument]:
        """Every model argument in the docs' order: the parameters, the others, then ``preset``."""
        params = [
            Argument(f.name, f.default, self.meanings[f.name]) for f in dataclasses.fields(self.params)
        ]  # the parameters' defaults are the dataclass's own
        return [*params, *self.extra, PRESET]

    def defaults(self) -> dict[str, Any]:
        return {argument.name: argument.default for argument in self.arguments() if argument.name != "preset"}

    def is_neutral(self, point: Any) -> bool:
        return all(getattr(point, name) == value for name, value in self.neutral.items())


PRESET = Argument("preset", None, "a named set of the method's arguments (`models/presets.json`; the table below)")
LAYERS_FORMAT = "`all`, `[0,1,2,20]`, inclusive ranges `[0-13,20]` or `<32` (those below 32); 0-based"
