"""The factory: ModelConfig -> keras.Sequential, and the loss, optimizer and metrics objects.

Layers are built from the registry with the arguments written in the config; Keras's own
constructors validate those arguments, and their errors are re-raised with the layer's key path.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from nntrain import registry
from nntrain.config.schema import LayerSpec, ModelConfig, NamedSpec, TrainingConfig
from nntrain.data.preprocess import Normalization
from nntrain.errors import ConfigError, KeyPath, did_you_mean
from nntrain.tf import import_keras


def _layer_class(keras: Any, type_name: str) -> Any:
    return getattr(keras.layers, registry.LAYERS[type_name])


def _accepted_args(cls: Any, base: Any) -> set[str]:
    """Keyword arguments a constructor takes, including those its **kwargs pass to base."""
    names: set[str] = set()
    for klass in (cls, base):
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self":
                names.add(p.name)
    return names


def _activation_layer(keras: Any, spec: Any, path: KeyPath) -> Any:
    """A name Keras serialises as is, or a Keras layer for activations with arguments."""
    if isinstance(spec, dict):
        name = registry.resolve("activation", spec["name"], registry.ACTIVATIONS)
        args = {k: v for k, v in spec.items() if k != "name"}
        path = path + ("name",)
    else:
        name = registry.resolve("activation", spec, registry.ACTIVATIONS)
        args = {}
    if name in registry.PARAMETRIC_ACTIVATIONS:
        cls_name, defaults = registry.PARAMETRIC_ACTIVATIONS[name]
        if args or defaults:
            return _construct(keras, getattr(keras.layers, cls_name), {**defaults, **args},
                              path[:-1] if path[-1] == "name" else path)
    if args:
        raise ConfigError.at(path[:-1], f"activation '{name}' takes no arguments; write it as a "
                             "plain name")
    return name


# Spellings from other libraries that string similarity does not connect to Keras's names.
_ALIASES = {"lr": "learning_rate", "eps": "epsilon", "betas": "beta_1", "p": "rate",
            "out_features": "units", "hidden_size": "units", "dim": "units"}


def _construct(keras: Any, cls: Any, args: dict[str, Any], path: KeyPath,
               base: Any = None) -> Any:
    """cls(**args), with a misspelled argument reported at its own key, with a suggestion."""
    accepted = _accepted_args(cls, base if base is not None else keras.layers.Layer)
    for arg in args:
        if arg not in accepted:
            hint = (f" (did you mean '{_ALIASES[arg]}'?)" if _ALIASES.get(arg) in accepted
                    else did_you_mean(arg, accepted))
            raise ConfigError.at(path + (arg,), f"{cls.__name__} has no argument '{arg}'{hint}",
                                 key=True)
    try:
        return cls(**args)
    except TypeError as exc:
        missing = re.findall(r"'(\w+)'", str(exc)) if "required" in str(exc) else []
        if missing:
            raise ConfigError.at(path, f"{cls.__name__} needs {', '.join(missing)}, e.g. "
                                 f"{missing[0]}: ...") from None
        raise ConfigError.at(path, f"{cls.__name__}: {_first_line(exc)}") from None
    except ValueError as exc:
        raise ConfigError.at(_refused_argument(path, exc, args),
                             f"{cls.__name__}: {_first_line(exc)}") from None


def _refused_argument(path: KeyPath, exc: Exception, args: dict[str, Any]) -> KeyPath:
    """The key of the argument a Keras constructor refused: Keras names it in its message
    ("Received: rate=1.5", "Received kernel_size=-1"); the layer's own key otherwise."""
    named = re.search(r"Received:? (\w+)=", str(exc))
    return path + (named.group(1),) if named and named.group(1) in args else path


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def build_layers(keras: Any, spec: LayerSpec, path: KeyPath) -> list[Any]:
    """One config layer -> one or two Keras layers (an activation with arguments is its own)."""
    cls = _layer_class(keras, spec.type)
    args = spec.args
    args.pop("input_shape", None)  # taken by build_model from the first layer
    if spec.type == "leaky_relu":
        args.setdefault("negative_slope", registry.LEAKY_RELU_SLOPE)
    activation = args.pop("activation", None) if "activation" in args else None
    extra = []
    if activation is not None:
        act = _activation_layer(keras, activation, path + ("activation",))
        if isinstance(act, str):
            args["activation"] = act
        elif spec.type == "activation":
            return [act]
        else:
            extra.append(act)
    elif spec.type == "activation":
        raise ConfigError.at(path, "an activation layer needs 'activation', e.g. "
                             "{type: activation, activation: tanh}")
    return [_construct(keras, cls, args, path), *extra]


def input_shape_of(model: ModelConfig) -> list[int] | None:
    """model.input_shape, or input_shape written on the first layer as in Keras examples."""
    if model.input_shape is not None:
        return list(model.input_shape)
    first = model.layers[0].args.get("input_shape")
    return list(first) if first is not None else None


def build_model(model: ModelConfig, input_shape: tuple[int, ...],
                normalization: Normalization | None = None) -> Any:
    """Build the Sequential model layer by layer, so a shape error names its layer.

    A normalization learned from the training rows (data.normalize) becomes the first layer,
    so the saved model takes raw inputs.
    """
    keras = import_keras()
    seq = keras.Sequential(name="nntrain_model")
    seq.add(keras.Input(shape=tuple(input_shape)))
    if normalization is not None:
        seq.add(normalization.layer(keras))
    for i, spec in enumerate(model.layers):
        path: KeyPath = ("model", "layers", i)
        for layer in build_layers(keras, spec, path):
            try:
                seq.add(layer)
            except (ValueError, TypeError) as exc:
                raise ConfigError.at(path, f"cannot add {type(layer).__name__} here: "
                                     f"{_first_line(exc)}") from None
    return seq


def _named(keras: Any, module: str, table: dict[str, Any], spec: NamedSpec, path: KeyPath,
           **fixed: Any) -> Any:
    cls = getattr(getattr(keras, module), table[spec.name])
    base = {"losses": keras.losses.Loss, "metrics": keras.metrics.Metric,
            "optimizers": keras.optimizers.Optimizer}[module]
    return _construct(keras, cls, {**spec.args, **fixed}, path, base)


def build_loss(training: TrainingConfig) -> Any:
    keras = import_keras()
    return _named(keras, "losses", registry.LOSSES, training.loss, ("training", "loss"))


def build_metrics(training: TrainingConfig) -> list[Any]:
    keras = import_keras()
    out: list[Any] = []
    for i, m in enumerate(training.metrics):
        if registry.METRICS[m.name] is None and not m.args:
            out.append(m.name)
        else:
            out.append(_named(keras, "metrics", registry.METRICS, m, ("training", "metrics", i),
                              **({} if "name" in m.args else {"name": m.name})))
    return out


def build_optimizer(training: TrainingConfig, steps_per_epoch: int) -> Any:
    """The optimizer, with its learning rate replaced by the configured decay schedule."""
    keras = import_keras()
    spec = training.optimizer
    fixed: dict[str, Any] = {}
    sched = training.lr_schedule
    lr = spec.args.get("learning_rate", 0.001)
    if sched is not None and sched.type == "exponential_decay":
        fixed["learning_rate"] = keras.optimizers.schedules.ExponentialDecay(
            lr, sched.decay_steps, sched.decay_rate, staircase=sched.staircase)
    elif sched is not None and sched.type == "cosine_decay":
        total = sched.decay_steps or max(1, training.epochs * steps_per_epoch - sched.warmup_steps)
        fixed["learning_rate"] = keras.optimizers.schedules.CosineDecay(
            0.0 if sched.warmup_steps else lr, total, alpha=sched.alpha,
            warmup_target=lr if sched.warmup_steps else None, warmup_steps=sched.warmup_steps)
    return _named(keras, "optimizers", registry.OPTIMIZERS, spec, ("training", "optimizer"),
                  **fixed)
