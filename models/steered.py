"""What the three method models share: arguments from the registry, presets, the parameter object, one-point answers.

A method model is the baseline (:class:`models.vlm.VLM`) plus one method (``models.methods``). Its arguments are
resolved before any weight is loaded (an explicit argument, then the preset, then the registry's default; a bad
value is refused by name), the checkpoint is loaded, and :meth:`SteeredModel.set_up` finishes what needs the
model (its depth, its pixel layout). Answering one setting is answering a one-point grid: every model implements
:meth:`respond_grid`, and an evaluation and a sweep run the same code.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from loguru import logger

from interventions import use_steered_attention
from models.arguments import is_unset
from models.methods import MethodSpec
from models.names import DEFAULT_PRETRAINED
from models.presets import resolve
from models.vlm import VLM, GenerationSettings, PreparedBatch, Response


class SteeredModel(VLM):
    """The baseline plus :attr:`METHOD`; subclasses answer grids (:meth:`respond_grid`) and finish set-up."""

    METHOD: ClassVar[MethodSpec]

    def __init__(self, preset: str | None = None, **kwargs: Any) -> None:
        method_names = set(self.METHOD.defaults())
        given = {name: kwargs.pop(name) for name in list(kwargs) if name in method_names}
        pretrained = kwargs.get("pretrained", DEFAULT_PRETRAINED)
        family = self.family_of(pretrained)
        self.refuse_unsupported(family, pretrained)
        values, from_preset = resolve(
            self.METHOD.name,
            preset,
            {name: (None if is_unset(given.get(name)) else given.get(name)) for name in method_names},
            self.METHOD.defaults(),
            exclusive=self.METHOD.exclusive,
            model_type=family.model_type,
            depth=family.text_config_of(self._config(pretrained)).num_hidden_layers,
        )
        self.preset = None if is_unset(preset) else preset
        self.arguments = values
        fields = [field.name for field in dataclasses.fields(self.METHOD.params)]
        self.params = self.METHOD.params(**{name: values[name] for name in fields})  # validates the numbers
        self.check_arguments(values)  # before the checkpoint is loaded
        super().__init__(**kwargs)
        self.set_up(values)
        use_steered_attention(self.model)
        self.announce_preset(from_preset)

    def refuse_unsupported(self, family, pretrained: str) -> None:
        """A method that cannot run on this checkpoint is refused before any weight is loaded, saying why."""
        if self.METHOD.needs_image_grid:
            problem = family.grid_problem(self._config(pretrained))
            if problem is not None:
                raise ValueError(
                    f"{self.MODEL_NAME}: {self.METHOD.title} maps each image token to its cell of the image, but "
                    f"{problem}; AdaptVis and CLVS run on it"
                )

    @classmethod
    def valid_arguments(cls) -> list[str]:
        return [*VLM.valid_arguments(), *(argument.name for argument in cls.METHOD.arguments())]

    def check_arguments(self, values: dict[str, Any]) -> None:
        """Refuse a malformed method argument before any weight is loaded (the numbers are checked already)."""

    def set_up(self, values: dict[str, Any]) -> None:
        """Finish what needs the loaded model (layer indices against its depth, its pixel layout)."""

    def method_arguments(self) -> dict:
        """The method's arguments that shape an answer (the attention log's ``model_args``)."""
        shown = {"preset": self.preset} if self.preset is not None else {}
        shown.update(dataclasses.asdict(self.params))
        return shown

    def announce_preset(self, from_preset: dict) -> None:
        """Log, at start-up, what a ``preset=`` expanded to (explicit arguments won over it)."""
        if self.preset is None:
            return
        chosen = ", ".join(f"{key}={value}" for key, value in self.method_arguments().items() if key != "preset")
        taken = ", ".join(sorted(from_preset)) or "nothing (every argument was given explicitly)"
        logger.info(f"{self.MODEL_NAME}: preset {self.preset} set {taken}; the method runs with {chosen}")

    def respond(self, batch: PreparedBatch, settings: GenerationSettings) -> Response:
        """The model's own setting: a grid of one point."""
        return self.respond_grid(batch, settings, [self.params])[0]
