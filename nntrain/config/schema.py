"""The config schema: one set of pydantic models, the single source of truth.

Validation, defaults and the JSON Schema printed by ``nntrain schema`` all come from these
classes. Everything is strict (``true`` is not a number, ``2.5`` is not an integer) and every
unknown key is an error. Layer arguments are Keras's own and are checked by Keras when the model
is built (see model.py); here only the layer ``type`` and its activation names are checked.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from nntrain import registry
from nntrain.data.synthetic import GENERATORS

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _named(kind: str, table: dict[str, Any]):
    """A 'before' validator: accept a name or {name: ..., args...}; check the name."""

    def check(value: Any) -> Any:
        if isinstance(value, str):
            value = {"name": value}
        if isinstance(value, dict) and "name" in value:
            try:
                name = registry.resolve(kind, value["name"], table)
            except registry.UnknownName as exc:
                raise PydanticCustomError("unknown_name", str(exc)) from None
            return {**value, "name": name}
        return value

    return check


class NamedSpec(BaseModel):
    """A Keras object by name, with its constructor's own arguments beside the name."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    name: str
    _table: ClassVar[dict[str, Any]] = {}

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        # In a file, a bare name is the usual spelling; the mapping form carries arguments.
        as_object = handler.resolve_ref_schema(handler(core_schema))
        as_object["properties"]["name"]["enum"] = list(cls._table)
        return {"anyOf": [{"type": "string", "enum": list(cls._table)}, as_object]}

    @property
    def args(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class OptimizerSpec(NamedSpec):
    _table = registry.OPTIMIZERS

    @model_validator(mode="before")
    @classmethod
    def _check(cls, value: Any) -> Any:
        value = _named("optimizer", registry.OPTIMIZERS)(value)
        lr = value.get("learning_rate") if isinstance(value, dict) else None
        if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float))
                               or lr <= 0):
            raise PydanticCustomError(
                "learning_rate", "learning_rate must be a positive number, got {lr}",
                {"lr": repr(lr)})
        return value


class LossSpec(NamedSpec):
    _table = registry.LOSSES

    @model_validator(mode="before")
    @classmethod
    def _check(cls, value: Any) -> Any:
        return _named("loss", registry.LOSSES)(value)


class MetricSpec(NamedSpec):
    _table = registry.METRICS

    @model_validator(mode="before")
    @classmethod
    def _check(cls, value: Any) -> Any:
        return _named("metric", registry.METRICS)(value)


class Split(Section):
    """How the rows are divided. Fractions of all rows; training gets the rest."""

    validation: Fraction = 0.0
    test: Fraction = 0.2
    # false keeps the file's order: the last rows are the test rows (the tutorial's 80/20).
    shuffle: bool = True
    # null: stratify when the task is classification.
    stratify: bool | None = None

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> "Split":
        if self.validation + self.test >= 1:
            raise PydanticCustomError(
                "split", "validation + test must leave rows for training (sum < 1), got "
                "{total}", {"total": round(self.validation + self.test, 6)})
        return self


class GeneratedData(Section):
    """Data drawn in memory by a named generator (see `nntrain generate-data --list`)."""

    source: Literal["generate"]
    generator: Annotated[str, Field(json_schema_extra={"enum": list(GENERATORS)})] = "random"
    samples: PositiveInt = 1000
    features: PositiveInt | None = None  # the generator's own default when omitted
    classes: PositiveInt = 2
    noise: NonNegativeFloat = 0.1
    seed: int | None = None  # training.seed when omitted
    split: Split = Split()

    @field_validator("generator")
    @classmethod
    def _known(cls, value: str) -> str:
        try:
            return registry.resolve("generator", value, GENERATORS)
        except registry.UnknownName as exc:
            raise PydanticCustomError("unknown_name", str(exc)) from None

    @model_validator(mode="after")
    def _enough(self) -> "GeneratedData":
        gen = GENERATORS[self.generator]
        if self.features is not None and self.features < gen.min_features:
            raise PydanticCustomError(
                "features", "generator '{g}' needs at least {m} features, got {f}",
                {"g": self.generator, "m": gen.min_features, "f": self.features})
        return self


class CsvData(Section):
    """A CSV file with a header row; one column is the target, the others are inputs."""

    source: Literal["csv"]
    path: str  # relative paths are relative to the config file
    target: str
    features: list[str] | None = None  # all columns but the target when omitted
    split: Split = Split()


DataConfig = Annotated[Union[GeneratedData, CsvData], Field(discriminator="source")]


class LayerSpec(BaseModel):
    """One Keras layer: its type and that layer's own arguments (checked by Keras at build)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    type: Annotated[str, Field(json_schema_extra={"enum": list(registry.LAYERS)})]

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        try:
            return registry.resolve("layer type", value, registry.LAYERS)
        except registry.UnknownName as exc:
            raise PydanticCustomError("unknown_name", str(exc)) from None

    @property
    def args(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ModelConfig(Section):
    # Taken from the data when omitted.
    input_shape: list[PositiveInt] | None = None
    layers: Annotated[list[LayerSpec], Field(min_length=1)]


class EarlyStopping(Section):
    monitor: str = "val_loss"  # falls back to "loss" when there is no validation data
    patience: Annotated[int, Field(ge=0)] = 5
    min_delta: NonNegativeFloat = 0.0
    restore_best_weights: bool = True


class ExponentialDecay(Section):
    type: Literal["exponential_decay"]
    decay_steps: PositiveInt
    decay_rate: PositiveFloat
    staircase: bool = False


class CosineDecay(Section):
    type: Literal["cosine_decay"]
    decay_steps: PositiveInt | None = None  # the whole run when omitted
    alpha: Fraction = 0.0  # final learning rate as a fraction of the initial one
    warmup_steps: Annotated[int, Field(ge=0)] = 0


class ReduceOnPlateau(Section):
    type: Literal["reduce_on_plateau"]
    monitor: str = "val_loss"
    factor: Fraction = 0.1
    patience: Annotated[int, Field(ge=0)] = 10
    min_lr: NonNegativeFloat = 0.0


LrSchedule = Annotated[Union[ExponentialDecay, CosineDecay, ReduceOnPlateau],
                       Field(discriminator="type")]


class TrainingConfig(Section):
    loss: LossSpec
    optimizer: OptimizerSpec = OptimizerSpec(name="adam")
    metrics: list[MetricSpec] = []
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    shuffle: bool = True  # reshuffle the training rows every epoch
    # One seed for everything random: data generation, splits, weights, shuffling, dropout.
    seed: int = 42
    early_stopping: EarlyStopping | None = None
    lr_schedule: LrSchedule | None = None
    # Batches run per call into the compiled training step. Each call costs ~1 ms of Python,
    # which dominates small models; results are identical whatever the value (see docs/benchmarks.md).
    steps_per_execution: PositiveInt = 32


class OutputConfig(Section):
    dir: str = "runs"  # relative to the working directory
    name: str | None = None  # the config file's name when omitted

    @field_validator("name")
    @classmethod
    def _plain(cls, value: str | None) -> str | None:
        if value is not None and (not value or "/" in value or "\\" in value
                                  or value.startswith(".")):
            raise PydanticCustomError(
                "run_name", "a run name is a plain directory name (no '/', not starting with "
                "'.'), got {v}", {"v": repr(value)})
        return value


class RunConfig(Section):
    """One training run: data, model, training and where outputs go."""

    data: DataConfig
    model: ModelConfig
    training: TrainingConfig
    output: OutputConfig = OutputConfig()


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a config file, for editors and other tools."""
    schema = RunConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "nntrain run config"
    return schema
