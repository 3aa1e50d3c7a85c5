"""The settings a sweep tries (its points): ``--grid name=v1,v2`` parsed against what the method registry lets a
sweep vary. (An image's token grid, elsewhere, is another thing: ``families``.)

A setting is a dict of parameter values. Every setting is checked by building the method's own parameter
object, so a value the model would refuse (``smoothing=1.5``) is refused here, before any model is loaded. Which
parameters a method sweeps and its neutral setting are the registry's (``models.methods``).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from models.methods import METHODS, MethodSpec, method_of_model


class PointsError(ValueError):
    """A malformed or conflicting ``--grid``; the message names the parameter."""


def swept_method(model: str) -> MethodSpec:
    """The method ``--model`` runs; a model without one (a baseline) is refused with the models that have one."""
    try:
        return method_of_model(model)
    except KeyError:
        known = [name for method in METHODS.values() for name in method.models]
        raise PointsError(f"--model {model} has no parameters to sweep; choose one of {', '.join(known)}") from None


def parse_points(specs: Sequence[str], model: str, fixed: Mapping[str, Any]) -> dict[str, list[float]]:
    """``["name=v1,v2", ...]`` -> ``{name: [v1, v2]}``, refusing unknown names, non-numbers, empty lists,
    a parameter given twice, and a parameter also fixed in ``--model_args``."""
    method = swept_method(model)
    parameters = method.sweepable
    grid: dict[str, list[float]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip()
        if not sep or not name:
            raise PointsError(f"--grid {spec!r}: write NAME=V1,V2,... (e.g. --grid {parameters[0]}=0.5,0.8)")
        if name not in parameters:
            raise PointsError(
                f"--grid: unknown parameter {name!r} for {model}; its parameters are {', '.join(parameters)}"
            )
        if name in grid:
            raise PointsError(f"--grid: parameter {name!r} is given twice; list all its values in one --grid")
        if name in fixed:
            raise PointsError(f"{name} is both in --model_args and --grid: give it in one place only")
        items = [item.strip() for item in values.split(",") if item.strip()]
        if not items:
            raise PointsError(f"--grid {name}=: no values; list them like {name}=0.5,0.8")
        parsed = []
        for item in items:
            try:
                parsed.append(float(item))
            except ValueError:
                raise PointsError(f"--grid {name}: {item!r} is not a number") from None
        grid[name] = sorted(set(parsed), key=parsed.index)
    if not grid:
        raise PointsError(f"give at least one --grid for {model} ({', '.join(parameters)})")
    return grid


def settings(grid: Mapping[str, Sequence[float]]) -> list[dict[str, float]]:
    """Every combination, in grid order (the last parameter varies fastest)."""
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[name] for name in names))]


def point(base: Any, setting: Mapping[str, Any]) -> Any:
    """The method's parameter object for ``setting`` on top of the model's own (fixed) parameters."""
    return dataclasses.replace(base, **setting)


def check(model: str, base: Any, all_settings: Sequence[Mapping[str, Any]]) -> None:
    """Build every setting's parameter object once: a value the method refuses fails here, naming it."""
    for setting in all_settings:
        try:
            point(base, setting)
        except ValueError as error:
            raise PointsError(f"--grid setting {dict(setting)} for {model}: {error}") from None
