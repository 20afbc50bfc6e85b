"""Name -> Keras object tables, and one resolve() for all of them.

The tables hold *names* of Keras attributes, not the objects, so that validating a config never
imports TensorFlow; model.py looks them up only when a model is really built. Config names are
snake_case (``batch_normalization``); Keras's own class names (``BatchNormalization``) are
accepted too, because both spellings are normalised the same way.

Facts about losses and metrics that the rest of nntrain needs (the task a loss trains for,
whether a metric is better when larger) are stated here, once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nntrain.errors import ConfigError, did_you_mean

LAYERS: dict[str, str] = {
    "dense": "Dense",
    "dropout": "Dropout",
    "batch_normalization": "BatchNormalization",
    "layer_normalization": "LayerNormalization",
    "activation": "Activation",
    "leaky_relu": "LeakyReLU",
    "relu": "ReLU",
    "elu": "ELU",
    "prelu": "PReLU",
    "softmax": "Softmax",
    "flatten": "Flatten",
    "reshape": "Reshape",
    "gaussian_noise": "GaussianNoise",
    "conv1d": "Conv1D",
    "conv2d": "Conv2D",
    "max_pooling1d": "MaxPooling1D",
    "max_pooling2d": "MaxPooling2D",
    "average_pooling1d": "AveragePooling1D",
    "average_pooling2d": "AveragePooling2D",
    "global_average_pooling1d": "GlobalAveragePooling1D",
    "global_average_pooling2d": "GlobalAveragePooling2D",
    "global_max_pooling1d": "GlobalMaxPooling1D",
    "global_max_pooling2d": "GlobalMaxPooling2D",
    "embedding": "Embedding",
    "simple_rnn": "SimpleRNN",
    "lstm": "LSTM",
    "gru": "GRU",
    # Pictures (README, "Pictures"): scaling, and augmentation that is active only in
    # training; both are saved in the model, so it takes raw pixels.
    "rescaling": "Rescaling",
    "resizing": "Resizing",
    "center_crop": "CenterCrop",
    "random_flip": "RandomFlip",
    "random_rotation": "RandomRotation",
    "random_zoom": "RandomZoom",
    "random_translation": "RandomTranslation",
    "random_contrast": "RandomContrast",
    "random_brightness": "RandomBrightness",
}

# Activations Keras serialises by name. The tutorial's six come first.
ACTIVATIONS: dict[str, str] = {
    name: name
    for name in (
        "linear", "exponential", "sigmoid", "tanh", "relu", "leaky_relu",
        "softmax", "log_softmax", "gelu", "elu", "selu", "celu", "softplus", "softsign",
        "swish", "silu", "mish", "relu6", "hard_sigmoid", "hard_silu", "hard_swish",
        "hard_tanh", "log_sigmoid", "glu", "sparsemax",
    )
}

# Activations that take arguments are built as their Keras *layer*, so the saved model stays plain
# Keras (a Python closure would need nntrain to load). Name -> (layer class, default kwargs).
PARAMETRIC_ACTIVATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    # The tutorial defines leaky ReLU as max(0.01x, x) (PyTorch's default too); Keras defaults to
    # a slope of 0.2 for the function and 0.3 for the layer. We follow the tutorial.
    "leaky_relu": ("LeakyReLU", {"negative_slope": 0.01}),
    "relu": ("ReLU", {}),
    "elu": ("ELU", {}),
    "softmax": ("Softmax", {}),
}
LEAKY_RELU_SLOPE = 0.01

LOSSES: dict[str, str] = {
    "binary_crossentropy": "BinaryCrossentropy",
    "categorical_crossentropy": "CategoricalCrossentropy",
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
    "binary_focal_crossentropy": "BinaryFocalCrossentropy",
    "categorical_focal_crossentropy": "CategoricalFocalCrossentropy",
    "mean_squared_error": "MeanSquaredError",
    "mse": "MeanSquaredError",
    "mean_absolute_error": "MeanAbsoluteError",
    "mae": "MeanAbsoluteError",
    "mean_absolute_percentage_error": "MeanAbsolutePercentageError",
    "mape": "MeanAbsolutePercentageError",
    "mean_squared_logarithmic_error": "MeanSquaredLogarithmicError",
    "msle": "MeanSquaredLogarithmicError",
    "huber": "Huber",
    "log_cosh": "LogCosh",
    "hinge": "Hinge",
    "squared_hinge": "SquaredHinge",
    "categorical_hinge": "CategoricalHinge",
    "kl_divergence": "KLDivergence",
    "poisson": "Poisson",
    "cosine_similarity": "CosineSimilarity",
}

# What each loss (by Keras class) trains the model to output: the task of its targets (see
# nntrain/targets.py), and whether the outputs are scores with a margin at 0 (hinge losses) rather
# than probabilities. Losses not listed are regression losses.
LOSS_TASKS: dict[str, tuple[str, bool]] = {
    "BinaryCrossentropy": ("binary", False),
    "BinaryFocalCrossentropy": ("binary", False),
    "Hinge": ("binary", True),
    "SquaredHinge": ("binary", True),
    "SparseCategoricalCrossentropy": ("multiclass", False),
    "CategoricalCrossentropy": ("onehot", False),
    "CategoricalFocalCrossentropy": ("onehot", False),
    "CategoricalHinge": ("onehot", True),
    "KLDivergence": ("onehot", False),
}

OPTIMIZERS: dict[str, str] = {
    "sgd": "SGD",
    "adam": "Adam",
    "adamw": "AdamW",
    "rmsprop": "RMSprop",
    "adagrad": "Adagrad",
    "adadelta": "Adadelta",
    "adamax": "Adamax",
    "nadam": "Nadam",
    "ftrl": "Ftrl",
    "lion": "Lion",
    "lamb": "Lamb",
    "adafactor": "Adafactor",
}

# "accuracy" stays a string: Keras picks binary, categorical or sparse accuracy from the loss.
METRICS: dict[str, str | None] = {
    "accuracy": None,
    "binary_accuracy": "BinaryAccuracy",
    "categorical_accuracy": "CategoricalAccuracy",
    "sparse_categorical_accuracy": "SparseCategoricalAccuracy",
    "top_k_categorical_accuracy": "TopKCategoricalAccuracy",
    "sparse_top_k_categorical_accuracy": "SparseTopKCategoricalAccuracy",
    "auc": "AUC",
    "precision": "Precision",
    "recall": "Recall",
    "f1_score": "F1Score",
    "mean_squared_error": "MeanSquaredError",
    "mse": "MeanSquaredError",
    "mean_absolute_error": "MeanAbsoluteError",
    "mae": "MeanAbsoluteError",
    "root_mean_squared_error": "RootMeanSquaredError",
    "rmse": "RootMeanSquaredError",
    "mean_absolute_percentage_error": "MeanAbsolutePercentageError",
    "mape": "MeanAbsolutePercentageError",
    "r2_score": "R2Score",
    "log_cosh_error": "LogCoshError",
}


def normalize(name: str) -> str:
    """'BatchNormalization', 'batch_normalization' and 'batch-normalization' are one name."""
    return name.lower().replace("_", "").replace("-", "")


class UnknownName(ConfigError):
    """A name that is not in a table; the message lists the choices and suggests the closest.
    A config error: where the name came from (a key path, an option) is added by the caller."""


def resolve(kind: str, name: str, table: Mapping[str, Any]) -> str:
    """Return the canonical table key for ``name`` or raise UnknownName."""
    if not isinstance(name, str):
        raise UnknownName(f"expected the name of a {kind}, got {name!r}")
    wanted = normalize(name)
    for key in table:
        if normalize(key) == wanted or normalize(str(table[key] or "")) == wanted:
            return key
    suggestion = did_you_mean(name, table)
    # A close match is the useful answer; the whole list only when there is none.
    raise UnknownName(f"unknown {kind} '{name}'{suggestion}" if suggestion else
                      f"unknown {kind} '{name}'; choose one of: {', '.join(table)}")


def loss_task(name: str) -> str:
    """'binary', 'multiclass', 'onehot' or 'regression': what a loss's targets are."""
    return LOSS_TASKS.get(LOSSES.get(name, ""), ("regression", False))[0]


def loss_outputs_scores(name: str) -> bool:
    """Whether a classifier trained with this loss outputs margin scores, not probabilities."""
    return LOSS_TASKS.get(LOSSES.get(name, ""), ("regression", False))[1]


# Words of the metrics that are better when larger (accuracies, auc, precision, recall, f1,
# r2); losses and errors are better when smaller. Matched inside the logged name, so that what
# Keras logs (val_binary_accuracy, auc_1) and a metric renamed with `name:` follow their metric.
_BIGGER_IS_BETTER = ("acc", "auc", "precision", "recall", "f1", "r2")


def bigger_is_better(logged: str) -> bool:
    """Whether larger values of a logged quantity ('val_accuracy', 'test.loss') are better."""
    name = logged.rpartition(".")[2].removeprefix("val_")
    return any(word in name for word in _BIGGER_IS_BETTER)
