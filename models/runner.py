"""A method as the engine runs it: its arguments resolved, its setting, and how it answers a batch.

A :class:`MethodRunner` is built from the model arguments before any weight is loaded (an explicit argument wins over
the preset, the preset over the registry's default; a bad value is refused by name), finishes what needs the loaded
model in :meth:`MethodRunner.set_up`, and answers a batch under any number of settings (``points``). An evaluation is
one setting among many, so an evaluation and a sweep run the same code.

:class:`LastRowRunner` answers many settings at once for the methods that edit the prompt's last row (AdaptVis, CLVS): the shared
prefix is computed once, the settings run together with the batch repeated once per setting, and a method supplies
only its plan (what it decides from the prefix), its row editor for a group of settings, its decisions for the log and
its whole-prompt fallback.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, ClassVar

from loguru import logger

from interventions.prefix import PromptPrefix
from models.arguments import is_unset
from models.batch import GenerationSettings, PreparedBatch, Response
from models.checkpoint import Checkpoint
from models.host import MethodHost, Process
from models.presets import resolve
from models.spec import MethodSpec


class MethodRunner:
    """One method's runtime: :attr:`params` (its own setting), :meth:`answer` and :meth:`whole_prompt`.

    Built by the engine's loader with the method's declaration (``spec``): a runner never names its spec itself.
    """

    steers: ClassVar[bool] = True  # whether answers come from a steered last row (no beam search then)
    per_sequence: ClassVar[bool] = False  # whether one batch can be answered with a setting per sequence

    def __init__(self, spec: MethodSpec, model_name: str, checkpoint: Checkpoint, arguments: dict[str, Any]) -> None:
        self.spec = spec
        preset = arguments.get("preset")
        names = set(spec.defaults())
        given = {name: (None if is_unset(arguments.get(name)) else arguments.get(name)) for name in names}
        self.name = model_name
        self.depth = checkpoint.depth  # what a layer argument is checked against, before any weight is loaded
        self.refuse_unsupported(checkpoint)
        values, self.from_preset = resolve(
            spec.name,
            preset,
            given,
            spec.defaults(),
            exclusive=spec.exclusive,
            model_type=checkpoint.model_type,
            depth=checkpoint.depth,
        )
        self.preset = None if is_unset(preset) else preset
        by_task = values.pop("by_task", {})
        self.values = values
        self.params = self.build_params(values)  # validates the numbers
        # a preset's settings per task (AdaptVis' paper: one line per dataset); an explicit argument wins over them
        self.by_task = {}
        for task, task_values in by_task.items():
            merged = {**values, **{name: value for name, value in task_values.items() if given.get(name) is None}}
            self.by_task[task] = self.build_params(merged)
        if self.by_task and not self.per_sequence:
            raise ValueError(f"{self.name}: preset {preset} sets {spec.title} per task, which {spec.title} cannot take")
        self.check_arguments(values)  # before the checkpoint is loaded

    def build_params(self, values: dict[str, Any]) -> Any:
        """The parameter object of ``values``; a value it refuses is refused naming the model."""
        fields = [field.name for field in dataclasses.fields(self.spec.params)]
        try:
            return self.spec.params(**{name: values[name] for name in fields})
        except ValueError as error:
            raise ValueError(f"{self.name}: {error}") from None

    def refuse_unsupported(self, checkpoint: Checkpoint) -> None:
        """A method that cannot run on this checkpoint is refused before any weight is loaded, saying why."""
        if self.spec.needs_image_grid:
            problem = checkpoint.grid_problem()
            if problem is not None:
                raise ValueError(
                    f"{self.name}: {self.spec.title} maps each image token to its cell of the image, but "
                    f"{problem}; AdaptVis and CLVS run on it"
                )

    def check_arguments(self, values: dict[str, Any]) -> None:
        """Refuse a malformed method argument before any weight is loaded (the numbers are checked already)."""

    def set_up(self, host: MethodHost, checkpoint: Checkpoint, process: Process) -> None:
        """Finish what needs the loaded model (layer indices against its depth, its pixel layout, VEA's profiled
        layers); ``process``: where this process stands among data-parallel ones (rank 0 profiles, the others wait)."""

    def arguments(self) -> dict:
        """The method's arguments that shape an answer (the attention log's ``model_args``)."""
        shown = {"preset": self.preset} if self.preset is not None else {}
        shown.update(dataclasses.asdict(self.params))
        if self.by_task:
            shown["by_task"] = {task: dataclasses.asdict(params) for task, params in self.by_task.items()}
        return shown

    def default_points(self, batch: PreparedBatch) -> list:
        """The runner's own setting for ``batch`` (a method that takes per-task presets answers per sequence)."""
        return [self.params]

    def announce_preset(self) -> None:
        """Log, at start-up, what a ``preset=`` expanded to (explicit arguments won over it)."""
        if self.preset is None:
            return
        chosen = ", ".join(f"{key}={value}" for key, value in self.arguments().items() if key != "preset")
        taken = ", ".join(sorted(self.from_preset)) or "nothing (every argument was given explicitly)"
        logger.info(f"{self.name}: preset {self.preset} set {taken}; the method runs with {chosen}")

    def answer(
        self, host: MethodHost, batch: PreparedBatch, settings: GenerationSettings, points: list, share_neutral: bool
    ) -> list[Response]:
        """The batch's answers under each of ``points``; ``share_neutral``: see ``Engine.answer``."""
        raise NotImplementedError

    def whole_prompt(
        self, host: MethodHost, batch: PreparedBatch, settings: GenerationSettings, point: Any
    ) -> Response:
        """The answers without a shared prefix: the fallback, and the tests' reference."""
        raise NotImplementedError


@dataclass
class Plan:
    """What a last-row method decided from the shared prefix: one key per setting (settings with equal keys share a
    generation) and whatever its editors need (AdaptVis: the confidence; CLVS: the unbiased positions)."""

    keys: list[Hashable]
    context: Any = None


class LayerRangeArguments:
    """For a runner whose settings hold a half-open ``[start_layer, end_layer)`` (PAI, VAF; listed before the runner
    class it completes): a range that leaves the model is refused before any weight loads, and the attention log
    records the range resolved against the depth (``end_layer`` none: the depth)."""

    def check_arguments(self, values: dict[str, Any]) -> None:
        self.params.layers(self.depth)

    def arguments(self) -> dict:
        return {**super().arguments(), "layers": [self.params.start_layer, self.params.layers(self.depth).stop]}


class LastRowRunner(MethodRunner):
    """AdaptVis and CLVS: every setting answered from one shared prefix, the settings together in batched passes."""

    def keeps_layer0_keys(self, points: list) -> bool:
        """Whether the prefix must keep layer 0's pre-RoPE keys (CLVS' position-unbiased layer 0)."""
        return False

    def neutral(self, host: MethodHost, batch: PreparedBatch, settings: GenerationSettings, point: Any) -> Response:
        """A setting that changes nothing, answered as the baseline is (one whole-prompt pass, in any dtype)."""
        return self.whole_prompt(host, batch, settings, point)

    def shares_prefix(self, settings: int) -> bool:
        """Whether ``settings`` steered settings are answered from one shared prefix (True: AdaptVis' two passes and
        every sweep gain from it) rather than by a whole-prompt pass each (PAI's one setting: its pass edits the last
        row in place, without the prefix's extra one-token forward)."""
        return True

    def plan(self, host: MethodHost, batch: PreparedBatch, prefix: PromptPrefix, points: list) -> Plan:
        """What the settings ``points`` decide from the shared prefix, and which of them share a generation."""
        raise NotImplementedError

    def editor(self, host: MethodHost, batch: PreparedBatch, prefix: PromptPrefix, keys: list, plan: Plan) -> Any:
        """The row editor for the settings ``keys``, the batch repeated once per key (setting-major)."""
        raise NotImplementedError

    def annotate(self, response: Response, batch: PreparedBatch, keys: list, editor: Any, plan: Plan) -> None:
        """Each row's decision for the attention log (``response.extras``)."""

    def guidance(self, host: MethodHost, batch: PreparedBatch, keys: list, plan: Plan) -> Any:
        """A logits processor for the settings ``keys`` (the batch repeated once per key), or None (PAI's image-free
        guidance; the other last-row methods change only attention)."""
        return None

    def answer(
        self, host: MethodHost, batch: PreparedBatch, settings: GenerationSettings, points: list, share_neutral: bool
    ) -> list[Response]:
        """Neutral settings take the baseline's pass (unless ``share_neutral``); the others share one prefix and run
        together, at most ``host.rows_per_pass`` rows (sequences x settings) at a time; without a shareable cache, or
        where :meth:`shares_prefix` declines, whole-prompt passes."""
        responses: list[Response | None] = [None] * len(points)
        steered = [i for i, point in enumerate(points) if share_neutral or not point.neutral]
        for i in (i for i in range(len(points)) if i not in steered):
            responses[i] = self.neutral(host, batch, settings, points[i])
        if not steered:
            return responses
        prefix = None
        if self.shares_prefix(len(steered)):
            prefix = host.prompt_prefix(batch, keep_layer0_keys=self.keeps_layer0_keys([points[i] for i in steered]))
        if prefix is None:
            for i in steered:
                responses[i] = self.whole_prompt(host, batch, settings, points[i])
            return responses
        plan = self.plan(host, batch, prefix, [points[i] for i in steered])
        by_key: dict[Hashable, list[int]] = {}
        for i, key in zip(steered, plan.keys):
            by_key.setdefault(key, []).append(i)
        distinct = list(by_key)
        per_pass = max(1, host.rows_per_pass // batch.size)
        for start in range(0, len(distinct), per_pass):
            group = distinct[start : start + per_pass]
            expanded = prefix.expanded(len(group))
            editor = self.editor(host, batch, expanded, group, plan)
            guidance = self.guidance(host, batch, group, plan)
            response = host.generate_steered(batch, settings, expanded, editor, copies=len(group), guidance=guidance)
            self.annotate(response, batch, group, editor, plan)
            for k, key in enumerate(group):
                for i in by_key[key]:
                    responses[i] = response.rows(k * batch.size, (k + 1) * batch.size)
        return responses
