"""The factory over every registered layer, activation, loss, optimizer and metric."""

from __future__ import annotations

import pytest

from nntrain import registry
from nntrain.config import load_text
from nntrain.model import build_loss, build_metrics, build_model, build_optimizer
from nntrain.tf import import_keras

# Arguments each layer needs, and an input shape it can take.
LAYER_CASES = {
    "dense": ({"units": 3}, [4]),
    "dropout": ({"rate": 0.5}, [4]),
    "batch_normalization": ({}, [4]),
    "layer_normalization": ({}, [4]),
    "activation": ({"activation": "tanh"}, [4]),
    "leaky_relu": ({}, [4]),
    "relu": ({}, [4]),
    "elu": ({}, [4]),
    "prelu": ({}, [4]),
    "softmax": ({}, [4]),
    "flatten": ({}, [2, 3]),
    "reshape": ({"target_shape": [3, 2]}, [6]),
    "gaussian_noise": ({"stddev": 0.1}, [4]),
    "conv1d": ({"filters": 2, "kernel_size": 3}, [8, 1]),
    "conv2d": ({"filters": 2, "kernel_size": [3, 3]}, [8, 8, 1]),
    "max_pooling1d": ({}, [8, 2]),
    "max_pooling2d": ({}, [8, 8, 1]),
    "average_pooling1d": ({"pool_size": 2}, [8, 2]),
    "average_pooling2d": ({"pool_size": 2}, [8, 8, 1]),
    "global_average_pooling1d": ({}, [8, 2]),
    "global_average_pooling2d": ({}, [8, 8, 1]),
    "global_max_pooling1d": ({}, [8, 2]),
    "global_max_pooling2d": ({}, [8, 8, 1]),
    "embedding": ({"input_dim": 10, "output_dim": 3}, [5]),
    "simple_rnn": ({"units": 3}, [5, 2]),
    "lstm": ({"units": 3}, [5, 2]),
    "gru": ({"units": 3}, [5, 2]),
    "rescaling": ({"scale": 0.00392156862745098}, [8, 8, 3]),
    "resizing": ({"height": 4, "width": 4}, [8, 8, 3]),
    "center_crop": ({"height": 4, "width": 4}, [8, 8, 3]),
    "random_flip": ({"mode": "horizontal"}, [8, 8, 3]),
    "random_rotation": ({"factor": 0.1}, [8, 8, 3]),
    "random_zoom": ({"height_factor": 0.1}, [8, 8, 3]),
    "random_translation": ({"height_factor": 0.1, "width_factor": 0.1}, [8, 8, 3]),
    "random_contrast": ({"factor": 0.2}, [8, 8, 3]),
    "random_brightness": ({"factor": 0.2}, [8, 8, 3]),
}


def config(layers: str, training: str = "loss: mse") -> object:
    return load_text(f"data: {{source: generate}}\nmodel:\n  layers: {layers}\n"
                     f"training: {{{training}}}\n").config


def test_every_layer_has_a_case():
    assert set(LAYER_CASES) == set(registry.LAYERS)


@pytest.mark.parametrize("name", list(registry.LAYERS))
def test_every_layer_builds(name):
    import json

    args, shape = LAYER_CASES[name]
    spec = json.dumps([{"type": name, **args}])
    model = build_model(config(spec).model, tuple(shape))
    keras = import_keras()
    assert isinstance(model.layers[-1], getattr(keras.layers, registry.LAYERS[name]))
    assert model.output_shape[0] is None


@pytest.mark.parametrize("name", list(registry.ACTIVATIONS))
def test_every_activation_builds_and_runs(name):
    import numpy as np

    model = build_model(config(f"[{{type: dense, units: 4, activation: {name}}}]").model, (3,))
    out = model.predict(np.ones((2, 3), np.float32), verbose=0)
    assert out.shape[0] == 2 and np.isfinite(out).all()


@pytest.mark.parametrize("name", list(registry.LOSSES))
def test_every_loss_builds(name):
    keras = import_keras()
    loss = build_loss(config("[{type: dense, units: 1}]", f"loss: {name}").training)
    assert isinstance(loss, keras.losses.Loss)


@pytest.mark.parametrize("name", list(registry.OPTIMIZERS))
def test_every_optimizer_builds_with_its_learning_rate(name):
    keras = import_keras()
    opt = build_optimizer(config("[{type: dense, units: 1}]",
                                 f"loss: mse, optimizer: {{name: {name}, learning_rate: 0.05}}")
                          .training, steps_per_epoch=10)
    assert isinstance(opt, keras.optimizers.Optimizer)
    assert float(opt.learning_rate) == pytest.approx(0.05)


@pytest.mark.parametrize("name", list(registry.METRICS))
def test_every_metric_builds(name):
    (metric,) = build_metrics(config("[{type: dense, units: 1}]",
                                     f"loss: mse, metrics: [{name}]").training)
    assert metric == name or metric.name == name


@pytest.mark.parametrize("spelling", ["BatchNormalization", "batch_normalization",
                                      "batchnormalization", "batch-normalization"])
def test_keras_and_snake_case_names_are_one(spelling):
    assert registry.resolve("layer type", spelling, registry.LAYERS) == "batch_normalization"


def test_unknown_name_suggests_or_lists():
    with pytest.raises(registry.UnknownName, match=r"did you mean 'adam'\?"):
        registry.resolve("optimizer", "adan", registry.OPTIMIZERS)
    with pytest.raises(registry.UnknownName, match="choose one of: sgd, adam, adamw"):
        registry.resolve("optimizer", "zzz", registry.OPTIMIZERS)


def test_misspelled_layer_argument_is_caught_with_its_path():
    from nntrain.errors import ConfigError

    with pytest.raises(ConfigError, match=r"Dense has no argument 'unit' \(did you mean "
                                          r"'units'\?\)") as exc:
        build_model(config("[{type: dense, units: 2, unit: 3}]").model, (3,))
    assert exc.value.problems[0].path == ("model", "layers", 0, "unit")


def test_missing_required_layer_argument():
    from nntrain.errors import ConfigError

    with pytest.raises(ConfigError, match="AveragePooling1D needs pool_size"):
        build_model(config("[{type: average_pooling1d}]").model, (8, 2))


def test_keras_rejections_carry_the_layer_path():
    from nntrain.errors import ConfigError

    with pytest.raises(ConfigError, match="Conv2D") as exc:
        build_model(config("[{type: conv2d, filters: 2, kernel_size: 3}]").model, (4,))
    assert exc.value.problems[0].path == ("model", "layers", 0)


def test_other_libraries_spellings_get_keras_names():
    from nntrain.errors import ConfigError

    with pytest.raises(ConfigError, match=r"Adam has no argument 'lr' \(did you mean "
                                          r"'learning_rate'\?\)"):
        build_optimizer(config("[{type: dense, units: 1}]",
                               "loss: mse, optimizer: {name: adam, lr: 0.1}").training, 1)
