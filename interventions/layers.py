"""Layer arguments: ``layers`` (``all``, ``[0,1,2,20]``, ranges such as ``[0-13,20]``, or ``<32``) and the half-open
``[start_layer, end_layer)`` of PAI and VAF, checked against the model's depth.

``<N`` is every layer below N that the model has: AdaptVis' code edits where ``idx < 32`` (shiqichen17/AdaptVis
3b41399 ``model_zoo/llama/modeling_llama_add_attn.py:269``), all 32 layers of a 7B LLaVA but only the first 32 of a
13B's 40, and every layer of a smaller model.

lmms-eval hands ``--model_args layers=[0-13,20]`` through as the string ``'[0-13,20]'``
(commas inside brackets are kept), so the string form is the one users write.
"""

from __future__ import annotations

from collections.abc import Iterable


def format_layers(layers: Iterable[int]) -> str:
    """Layer indices as a ``layers=`` model argument: ``[17,20,24]`` (what :func:`parse_layers` reads back)."""
    return "[" + ",".join(str(int(layer)) for layer in layers) + "]"


def parse_layers(value: str | int | Iterable[int] | None, num_layers: int, argument: str = "layers") -> list[int]:
    """Sorted, de-duplicated layer indices in ``[0, num_layers)``; ``all`` / None means every layer.

    Accepts ``all``, ``<N`` (every layer below N that exists), an int, a list of ints, or a string ``[a,b,c-d]``
    (brackets optional, ranges inclusive). Anything else raises ``ValueError`` naming ``argument``.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == "all"):
        return list(range(num_layers))
    if isinstance(value, str) and value.strip().startswith("<"):
        bound = value.strip()[1:].strip()
        if not bound.isdigit() or int(bound) < 1:
            raise ValueError(f"{argument}: {value!r} must be <N with N a positive whole number, like <32")
        return list(range(min(int(bound), num_layers)))
    if isinstance(value, bool):
        raise ValueError(
            f"{argument} must be 'all' or a list of layer indices like [0,1,2] or [0-13,20], got {value!r}"
        )
    items: list[int] = []
    if isinstance(value, int):
        items = [value]
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("[") != text.endswith("]"):
            raise ValueError(f"{argument}: unbalanced brackets in {value!r}")
        text = text.strip("[]").strip()
        if not text:
            raise ValueError(f"{argument} is empty ({value!r}); use 'all' or a list like [0,1,2]")
        for part in text.split(","):
            part = part.strip()
            try:
                if "-" in part[1:]:
                    start_text, end_text = part.split("-", 1) if not part.startswith("-") else (part, "")
                    start, end = int(start_text), int(end_text)
                    if start > end:
                        raise ValueError
                    items.extend(range(start, end + 1))
                else:
                    items.append(int(part))
            except ValueError:
                raise ValueError(
                    f"{argument}: cannot read {part!r} in {value!r}; write 'all', [0,1,2] or ranges like [0-13,20]"
                ) from None
    else:
        try:
            items = [int(item) for item in value]
        except (TypeError, ValueError):
            raise ValueError(f"{argument} must be 'all' or a list of layer indices, got {value!r}") from None
    bad = [item for item in items if not 0 <= item < num_layers]
    if bad:
        raise ValueError(
            f"{argument}: layer(s) {bad} out of range for a model with {num_layers} layers (0-{num_layers - 1})"
        )
    return sorted(set(items))


def check_layer_range(start: int, end: int | None) -> None:
    """``start_layer`` and ``end_layer`` are whole numbers with ``0 <= start < end`` (end None: the model's depth)."""
    for name, value in (("start_layer", start), ("end_layer", end)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
    if start < 0:
        raise ValueError(f"start_layer must be a whole number >= 0, got {start}")
    if end is not None and end <= start:
        raise ValueError(
            f"the layer range [start_layer, end_layer) = [{start}, {end}) is empty: end_layer must be above "
            f"start_layer (or none: the model's depth)"
        )


def layer_range(start: int, end: int | None, depth: int) -> range:
    """``[start, end)`` on a model ``depth`` layers deep; a range that leaves the model is refused naming it."""
    check_layer_range(start, end)
    stop = depth if end is None else end
    if stop > depth or start >= depth:
        raise ValueError(
            f"the layer range [start_layer, end_layer) = [{start}, {stop}) leaves the model, which has {depth} "
            f"layers: start_layer in [0, {depth - 1}], end_layer in [start_layer + 1, {depth}]"
        )
    return range(start, stop)
