"""The config schema: one set of pydantic models, the single source of truth.

Validation, defaults and the JSON Schema printed by ``nntrain schema`` all come from these
classes. Everything is strict (``true`` is not a number, ``2.5`` is not an integer) and every
unknown key is an error. Layer arguments are Keras's own and are checked by Keras when the model
is built (see model.py); here the layer ``type``, its activation names and the few arguments
most often mistyped are checked, so that `nntrain validate` and a sweep report them with the
other errors of the file, before any data is read.

Rules that span several keys live here too, as model validators: a rule is written once and
every command reports it the same way, located at the key to fix (``_errors_at``).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    ValidationError,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from nntrain import registry
from nntrain.data.synthetic import GENERATORS
from nntrain.errors import did_you_mean

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
# numpy's RandomState, which draws the data and the shuffles, takes seeds in [0, 2**32).
Seed = Annotated[int, Field(ge=0, lt=2**32)]
# A bound that no real run comes near (a million epochs of one step each take hours) but that
# catches a typo such as 1000000000000, which would otherwise train until killed.
MAX_EPOCHS = 1_000_000
# Longest run name: file systems allow 255 bytes in a name, and the staging directory adds
# '.' and '.partial' (and a kept attempt '.interrupted-YYYYmmdd-HHMMSS').
MAX_NAME_BYTES = 200


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _errors_at(title: str, errors: list[tuple[tuple[str | int, ...], str, str, Any]]
               ) -> ValidationError:
    """Several problems found by one model validator, each at its own key below the model:
    (key path, error type, message, the value found). Pydantic puts the model's own location
    in front, so each is reported at the key to fix, not at the section."""
    return ValidationError.from_exception_data(title, [
        InitErrorDetails(type=PydanticCustomError(kind, message), loc=loc, input=value)
        for loc, kind, message, value in errors])


def _named(kind: str, table: dict[str, Any]):
    """A 'before' validator: accept a name or {name: ..., args...}; check the name."""

    def check(value: Any) -> Any:
        if isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, (dict, BaseModel)):
            # Not "expected a mapping": a bare name is the usual spelling (`loss: mse`).
            raise PydanticCustomError("name_type", "expected a {kind} name", {"kind": kind})
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
                               or not math.isfinite(lr) or lr <= 0):
            # YAML reads 1e999 as inf, and .nan and .inf are floats: training would diverge.
            raise PydanticCustomError("learning_rate", "expected a positive number, got {lr}",
                                      {"lr": lr})
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
    # k-fold cross-validation over the rows that are not test rows: K models, each validated
    # on its own fold (so `validation` must stay 0). null: one split, one model.
    folds: Annotated[int, Field(ge=2)] | None = None

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> "Split":
        if self.validation + self.test >= 1:
            raise PydanticCustomError(
                "split", "validation + test must leave rows for training (sum < 1), got "
                "{total}", {"total": round(self.validation + self.test, 6)})
        if self.folds is not None and self.validation > 0:
            raise PydanticCustomError(
                "split", "with folds each fold is the validation rows of one model; remove "
                "validation (got {v})", {"v": self.validation})
        return self


class FillMissing(Section):
    """Replace every missing value with one number."""

    fill: float

    @field_validator("fill")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise PydanticCustomError("fill", "the fill value must be a finite number, got "
                                      "{v}", {"v": value})
        return value


MISSING_POLICIES = ("error", "drop", "mean")


def _missing_policy(value: Any) -> Any:
    """A 'before' validator: a policy name, or {fill: VALUE} (checked by FillMissing)."""
    if isinstance(value, str) and value not in MISSING_POLICIES:
        raise PydanticCustomError(
            "missing_policy", "expected error, drop, mean or {fill: VALUE}, got '{v}'{hint}",
            {"v": value, "hint": did_you_mean(value, MISSING_POLICIES)})
    if not isinstance(value, (str, dict, FillMissing)):
        raise PydanticCustomError("missing_policy", "expected error, drop, mean or "
                                  "{fill: VALUE}, got {v}", {"v": repr(value)})
    return value


# What to do with missing values (empty cells, NaN, inf): fail (the default: nothing missing
# is ever trained on silently), drop the row, fill with a number, or fill with the training
# rows' mean of that column (recorded in the run's preprocessing.json).
MissingPolicy = Annotated[
    Union[Annotated[Literal["error", "drop", "mean"], Tag("name")],
          Annotated[FillMissing, Tag("mapping")]],
    Discriminator(lambda v: "name" if isinstance(v, str) else "mapping"),
    BeforeValidator(_missing_policy),
]

# Fitted on the training rows only and saved inside the model as its first layer, so the model
# applied to raw inputs later gives the right answer.
Normalize = Literal["none", "standard", "minmax"]


# Regression only: train on (y - mean) / std of the training rows; the model ends in a fixed
# Rescaling layer that undoes it, so its outputs, the metrics and eval are in the target's units.
TargetNormalize = Literal["none", "standard"]


def _class_weight(value: Any) -> Any:
    """A 'before' validator: balanced, or {label: weight}."""
    if isinstance(value, str) and value != "balanced":
        raise PydanticCustomError("class_weight", "expected balanced or {label: weight}, got "
                                  "'{v}'{hint}", {"v": value,
                                                   "hint": did_you_mean(value, ["balanced"])})
    if not isinstance(value, (str, dict)):
        raise PydanticCustomError("class_weight", "expected balanced or {label: weight}, got "
                                  "{v}", {"v": repr(value)})
    return value


# balanced: each class weighs n_rows / (n_classes * its row count), counted on the training
# rows; or a weight per label, in the data's own labels (unnamed classes weigh 1).
ClassWeight = Annotated[Union[Literal["balanced"], dict[Union[str, int], PositiveFloat]],
                        BeforeValidator(_class_weight)]


class GeneratedData(Section):
    """Data drawn in memory by a named generator (see `nntrain generate-data --list`)."""

    source: Literal["generate"]
    generator: Annotated[str, Field(json_schema_extra={"enum": list(GENERATORS)})] = "random"
    samples: PositiveInt = 1000
    features: PositiveInt | None = None  # the generator's own default when omitted
    classes: Annotated[int, Field(ge=2)] = 2  # one class leaves nothing to learn
    noise: NonNegativeFloat = 0.1
    seed: Seed | None = None  # training.seed when omitted
    split: Split = Split()
    normalize: Normalize = "none"
    target_normalize: TargetNormalize = "none"

    @field_validator("generator")
    @classmethod
    def _known(cls, value: str) -> str:
        try:
            return registry.resolve("generator", value, GENERATORS)
        except registry.UnknownName as exc:
            raise PydanticCustomError("unknown_name", str(exc)) from None

    # A field validator (not a model one) so that the error points at `features`.
    @field_validator("features")
    @classmethod
    def _enough(cls, value: int | None, info: ValidationInfo) -> int | None:
        gen = GENERATORS.get(info.data.get("generator", ""))
        if value is not None and gen is not None and value < gen.min_features:
            raise PydanticCustomError(
                "features", "generator '{g}' needs at least {m} features, got {f}",
                {"g": info.data["generator"], "m": gen.min_features, "f": value})
        return value


class FileData(Section):
    """A file source: a split read from its own file (``validation_path``, ``test_path``) takes
    no rows from the main file; its fraction in ``split`` is 0 and the others apply to the rest.
    """

    @model_validator(mode="before")
    @classmethod
    def _no_fraction_for_separate_files(cls, value: Any) -> Any:
        # Filled in here rather than at load time, so the resolved config says it: test: 0.0.
        if not isinstance(value, dict) or not isinstance(value.get("split", {}), dict):
            return value
        split = value.get("split", {})
        fill = {part: 0.0 for part in ("validation", "test")
                if value.get(f"{part}_path") is not None or value.get(part) is not None
                if part not in split}
        return {**value, "split": {**split, **fill}} if fill else value

    @model_validator(mode="after")
    def _separate_files_take_no_fraction(self) -> "FileData":
        errors = []
        for part in ("validation", "test"):
            if getattr(self, f"{part}_path", None) is not None:
                where = f"data.{part}_path"
            elif getattr(self, part, None) is not None:  # npy: a pair of files
                where = f"data.{part}"
            else:
                continue
            fraction = getattr(self.split, part)
            if fraction > 0:
                errors.append((("split", part), "separate_file", f"the {part} rows come from "
                               f"{where}, so split.{part} must be 0 (it would take {part} rows "
                               "from the main file too); remove it", fraction))
        if errors:
            raise _errors_at(type(self).__name__, errors)
        return self


def _column_shorthand(value: Any) -> Any:
    """A 'before' validator: `city: categorical` is short for `city: {type: categorical}`."""
    return {"type": value} if isinstance(value, str) else value


class Column(Section):
    """How one CSV feature column enters the model (data.columns.NAME); see data/tabular.py.

    numeric: the number, normalized as data.normalize says. categorical: each value the
    training rows hold is a class of its own (text, or integers such as a zip code); values the
    training rows never held (and empty cells, with data.missing: mean or fill) share one
    out-of-vocabulary bucket.
    """

    type: Literal["numeric", "categorical"]
    # one_hot: one input unit per value. embedding: a learned vector of embedding_dim per value,
    # for columns with many values (one-hot of 1000 cities is 1000 mostly-zero inputs).
    encoding: Literal["one_hot", "embedding"] | None = None
    embedding_dim: PositiveInt | None = None  # null: 1.6 * values^0.56, at most 50

    @model_validator(mode="after")
    def _categorical_only(self) -> "Column":
        if self.type == "numeric" and (self.encoding or self.embedding_dim):
            raise PydanticCustomError("column", "encoding and embedding_dim are for "
                                      "categorical columns; this one is numeric", {})
        if self.embedding_dim is not None and self.encoding != "embedding":
            raise PydanticCustomError("column", "embedding_dim needs encoding: embedding", {})
        return self


class CsvData(FileData):
    """A CSV file with a header row; one column is the target, the others are inputs."""

    source: Literal["csv"]
    path: str  # relative paths are relative to the config file; - is standard input
    target: str
    features: list[str] | None = None  # all columns but the target when omitted
    validation_path: str | None = None  # the validation rows, in a file of their own
    test_path: str | None = None  # the test rows, in a file of their own
    split: Split = Split()
    missing: MissingPolicy = "error"
    normalize: Normalize = "none"
    target_normalize: TargetNormalize = "none"
    # Read the file in batches while training instead of loading it whole: for files larger
    # than memory. Labels must be numbers; rows go to splits by a hash of their row number.
    stream: bool = False
    # Per feature column: numeric or categorical. Columns left out are inferred: a column with
    # any cell that is not a number is categorical, the others numeric.
    columns: dict[str, Annotated[Column, BeforeValidator(_column_shorthand)]] | None = None

    @field_validator("columns")
    @classmethod
    def _whole_file(cls, value: dict[str, Column] | None,
                    info: ValidationInfo) -> dict[str, Column] | None:
        if value and info.data.get("stream"):
            raise PydanticCustomError("columns", "column types need the whole file (categories "
                                      "are learned from the training rows); set data.stream: "
                                      "false", {})
        return value

    @model_validator(mode="after")
    def _streamable(self) -> "CsvData":
        if not self.stream:
            return self
        errors = []
        if self.path == "-":
            errors.append((("stream",), "stream", "streaming reads the file again every epoch, "
                           "and standard input can be read only once; save the data to a file "
                           "and name it with --data FILE, or set stream: false", True))
        if self.split.stratify:
            errors.append((("split", "stratify"), "stream", "streamed rows cannot be "
                           "stratified: each row's split is decided on its own (by a hash of "
                           "its position); remove stratify, or set data.stream: false", True))
        if errors:
            raise _errors_at(type(self).__name__, errors)
        return self


class NpzData(FileData):
    """A NumPy .npz archive: an inputs array (rows first) and a target array, by name."""

    source: Literal["npz"]
    path: str  # relative paths are relative to the config file; - is standard input
    x: str = "x"  # the inputs array
    y: str = "y"  # the target array
    features: list[Annotated[int, Field(ge=0)]] | None = None  # columns of x; all when omitted
    validation_path: str | None = None  # the validation rows, in an archive of their own
    test_path: str | None = None  # the test rows, in an archive of their own
    split: Split = Split()
    missing: MissingPolicy = "error"
    normalize: Normalize = "none"
    target_normalize: TargetNormalize = "none"


# Every key of a data section that names a file or folder, listed once: a relative path is
# taken from the config file's folder, or from the working directory when given on the
# command line (config.validate_source); sources.resolve_paths makes them absolute for the run.
DATA_PATH_KEYS: tuple[tuple[str, ...], ...] = (
    ("path",), ("validation_path",), ("test_path",), ("x_path",), ("y_path",),
    ("validation", "x_path"), ("validation", "y_path"), ("test", "x_path"), ("test", "y_path"))


class NpyPair(Section):
    x_path: str
    y_path: str


class NpyData(FileData):
    """Two NumPy .npy files: the inputs (rows first) and the targets."""

    source: Literal["npy"]
    x_path: str  # relative paths are relative to the config file
    y_path: str
    features: list[Annotated[int, Field(ge=0)]] | None = None  # columns of x; all when omitted
    validation: NpyPair | None = None  # the validation rows, in files of their own
    test: NpyPair | None = None  # the test rows, in files of their own
    split: Split = Split()
    missing: MissingPolicy = "error"
    normalize: Normalize = "none"
    target_normalize: TargetNormalize = "none"


class ImageData(Section):
    """A folder of pictures with one sub-folder per class (the Keras convention): PNG, JPEG,
    BMP or GIF files, streamed from disk in batches. See README, "Pictures"."""

    source: Literal["images"]
    path: str  # the folder; relative paths are relative to the config file
    # [height, width]: every picture is resized to it (bilinear, the aspect ratio is not
    # kept). Omitted: every picture must have the size of the first one.
    image_size: Annotated[list[PositiveInt], Field(min_length=2, max_length=2)] | None = None
    color_mode: Literal["grayscale", "rgb"] = "rgb"
    split: Split = Split()


DataConfig = Annotated[Union[GeneratedData, CsvData, NpzData, NpyData, ImageData],
                       Field(discriminator="source")]


# The layer arguments most often mistyped, checked with the rest of the file rather than when
# Keras builds the model: `validate` then reports them all at once, before reading any data, and
# a sweep checks each value of its search space without building a model. Keras's constructors
# check every other argument at build time (model.py puts the key path on their errors).
_POSITIVE_INT_ARGS = ("units", "filters", "input_dim", "output_dim")


def _layer_arg_errors(layer: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str, str, Any]]:
    """Activation names and common argument values of one layer, as _errors_at takes them."""
    errors: list[tuple[tuple[str | int, ...], str, str, Any]] = []
    for arg in _POSITIVE_INT_ARGS:
        v = layer.get(arg)
        if arg in layer and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
            errors.append(((arg,), "positive_integer", "expected a positive integer", v))
    rate = layer.get("rate")
    if "rate" in layer and (isinstance(rate, bool) or not isinstance(rate, (int, float))
                            or not 0 <= rate < 1):
        errors.append((("rate",), "fraction", "expected a fraction in [0, 1)", rate))
    act = layer.get("activation")
    where: tuple[str | int, ...] = ("activation",)
    if isinstance(act, dict):
        if "name" not in act:
            return errors + [(where, "activation", "an activation with arguments needs a "
                              "'name', e.g. {name: leaky_relu, negative_slope: 0.1}", act)]
        act, where = act["name"], where + ("name",)
    if act is None:
        return errors
    if not isinstance(act, str):
        return errors + [(where, "name_type", "expected a name (text)", act)]
    try:
        registry.resolve("activation", act, registry.ACTIVATIONS)
    except registry.UnknownName as exc:
        errors.append((where, "unknown_name", str(exc), act))
    return errors


class LayerSpec(BaseModel):
    """One Keras layer: its type and that layer's own arguments (checked by Keras at build)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    type: Annotated[str, Field(json_schema_extra={"enum": list(registry.LAYERS)})]

    @model_validator(mode="wrap")
    @classmethod
    def _check_args(cls, value: Any, handler: Any) -> Any:
        # Wrapped, not before/after, so a bad type and a bad argument of one layer are both
        # reported.
        errors = _layer_arg_errors(value) if isinstance(value, dict) else []
        try:
            layer = handler(value)
        except ValidationError as exc:
            if not errors:
                raise
            errors = [(tuple(e["loc"]), e["type"], e["msg"], e["input"]) for e in exc.errors()
                      ] + errors
            layer = None
        if errors:
            raise _errors_at(cls.__name__, errors)
        return layer

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
    epochs: Annotated[int, Field(gt=0, le=MAX_EPOCHS)] = 10
    batch_size: PositiveInt = 32
    shuffle: bool = True  # reshuffle the training rows every epoch
    # One seed for everything random: data generation, splits, weights, shuffling, dropout.
    seed: Seed = 42
    early_stopping: EarlyStopping | None = None
    lr_schedule: LrSchedule | None = None
    class_weight: ClassWeight | None = None  # classification only; see ClassWeight
    # Batches run per call into the compiled training step. Each call costs ~1 ms of Python,
    # which dominates small models: 32 made batch-32 training 2.9x faster than plain fit
    # (docs/benchmarks.md). The batches and their order are the same whatever the value.
    steps_per_execution: PositiveInt = 32
    # TensorBoard logs (per-epoch scalars) in RUN_DIR/tensorboard, for `tensorboard --logdir
    # runs`. Off by default: ~2 ms per epoch, 2-3% of the example configs' training time.
    tensorboard: bool = False
    # The Keras backend: jax or tensorflow (--backend sets it). When omitted, KERAS_BACKEND,
    # else jax, which trains small models several times faster (docs/benchmarks.md);
    # multi_worker needs tensorflow. The trained .keras file loads on either.
    backend: Literal["tensorflow", "jax"] | None = None


class OutputConfig(Section):
    dir: str = "runs"  # relative to the working directory
    name: str | None = None  # the config file's name when omitted
    # PNG pictures of the run: training curves, and the decision boundary (2-D
    # classification) or predicted against actual values (regression).
    plots: bool = True

    @field_validator("name")
    @classmethod
    def _plain(cls, value: str | None) -> str | None:
        if value is not None and (not value or "/" in value or "\\" in value
                                  or value.startswith(".") or not value.isprintable()
                                  or len(value.encode("utf-8", "surrogatepass"))
                                  > MAX_NAME_BYTES):
            shown = repr(value if len(value) <= 60 else value[:60] + "...")
            raise PydanticCustomError(
                "run_name", "a run name is a plain directory name (no '/', no control "
                "characters, not starting with '.', at most {n} bytes), got {v}",
                {"v": shown, "n": MAX_NAME_BYTES})
        return value


class Distribution(Section):
    """Where training runs: one device (none), several local devices (mirrored), or several
    machines (multi_worker): tf.distribute on TensorFlow, keras.distribution.DataParallel
    for mirrored on JAX; see README, "Running on several devices or machines"."""

    strategy: Literal["none", "mirrored", "multi_worker"] = "none"
    # mirrored: device names such as /gpu:0 (gpu:0 on JAX); all GPUs when omitted, else every
    # (logical) CPU.
    devices: list[str] | None = None
    # Split the CPU into this many logical devices, so that mirrored runs on a CPU-only machine
    # (for tests). TensorFlow fixes its devices when it first runs an op, so this is applied
    # right after TensorFlow is imported; a process that ran TensorFlow before cannot use it.
    # On JAX it is XLA_FLAGS' host device count, set before JAX starts.
    cpu_devices: PositiveInt | None = None
    # multi_worker: every worker's host:port, the same list on every worker, and this worker's
    # index in it (0 is the chief, which writes the run). Taken from TF_CONFIG when omitted.
    workers: list[str] | None = None
    worker_index: Annotated[int, Field(ge=0)] | None = None
    timeout: PositiveFloat = 60.0  # seconds to wait for the other workers, then fail
    # multi_worker: seconds without a heartbeat after which a worker counts as lost and the
    # others stop (TensorFlow's own default is 10; heartbeats come from a C++ thread, so a
    # busy Python does not delay them).
    heartbeat_timeout: PositiveFloat = 5.0

    @field_validator("devices")
    @classmethod
    def _mirrored_only(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is not None and info.data.get("strategy") != "mirrored":
            raise PydanticCustomError("distribution", "devices needs strategy: mirrored, got "
                                      "strategy: {s}", {"s": info.data.get("strategy")})
        if value is not None and not value:
            raise PydanticCustomError("distribution", "name at least one device, or omit "
                                      "devices to use all of them", {})
        return value

    @field_validator("workers")
    @classmethod
    def _host_ports(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is None:
            return value
        if info.data.get("strategy") != "multi_worker":
            raise PydanticCustomError("distribution", "workers needs strategy: multi_worker, "
                                      "got strategy: {s}", {"s": info.data.get("strategy")})
        if not value:
            raise PydanticCustomError("distribution", "name at least one worker as "
                                      "host:port", {})
        for address in value:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise PydanticCustomError("host_port", "expected host:port (e.g. "
                                          "10.0.0.1:2222), got {a}", {"a": repr(address)})
        if len(set(value)) != len(value):
            raise PydanticCustomError("distribution", "each worker must appear once", {})
        return value

    @field_validator("worker_index")
    @classmethod
    def _in_range(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None:
            return value
        workers = info.data.get("workers")
        if workers is None:
            raise PydanticCustomError("distribution", "worker_index needs the workers list "
                                      "beside it (or neither, to read TF_CONFIG)", {})
        if value >= len(workers):
            raise PydanticCustomError("worker_index", "expected an index into the {n} workers "
                                      "(0 to {m}), got {v}",
                                      {"n": len(workers), "m": len(workers) - 1, "v": value})
        return value

    @model_validator(mode="after")
    def _workers_with_index(self) -> "Distribution":
        if self.workers is not None and self.worker_index is None:
            raise PydanticCustomError("distribution", "workers needs worker_index (this "
                                      "worker's place in the list) beside it", {})
        return self


class RunConfig(Section):
    """One training run: data, model, training and where outputs go."""

    data: DataConfig
    model: ModelConfig
    training: TrainingConfig
    output: OutputConfig = OutputConfig()
    distribution: Distribution = Distribution()


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a config file, for editors and other tools."""
    schema = RunConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "nntrain run config"
    return schema
