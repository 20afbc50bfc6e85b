"""Synthetic datasets: the tutorial's noise baseline and families a network can actually learn.

Every generator draws from ``numpy.random.RandomState(seed)``: its streams are frozen by numpy's
compatibility policy, so a seed gives the same bytes on every numpy version, and the tutorial's
``np.random.seed(s); np.random.rand(100, 2); np.random.randint(0, 2, 100)`` is exactly
``random`` with ``seed: s``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Arrays = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Generator:
    make: Callable[[np.random.RandomState, int, int, int, float], Arrays]
    task: str  # "classification" or "regression"
    summary: str
    min_features: int = 1
    default_features: int = 2


def _random(rs, n, features, classes, noise):
    x = rs.rand(n, features)
    y = rs.randint(0, classes, n)
    return x, y


def _linear(rs, n, features, classes, noise):
    x = rs.randn(n, features)
    w = rs.randn(features)
    y = (x @ w + noise * rs.randn(n) > 0).astype(np.int64)
    return x, y


def _xor(rs, n, features, classes, noise):
    x = rs.uniform(-1.0, 1.0, size=(n, features))
    y = ((x[:, 0] > 0) != (x[:, 1] > 0)).astype(np.int64)
    return x + noise * rs.randn(n, features), y


def _moons(rs, n, features, classes, noise):
    n_out = n // 2
    n_in = n - n_out
    t_out = np.linspace(0, np.pi, n_out)
    t_in = np.linspace(0, np.pi, n_in)
    x = np.concatenate([
        np.stack([np.cos(t_out), np.sin(t_out)], axis=1),
        np.stack([1 - np.cos(t_in), 0.5 - np.sin(t_in)], axis=1),
    ])
    y = np.concatenate([np.zeros(n_out, np.int64), np.ones(n_in, np.int64)])
    order = rs.permutation(n)
    return x[order] + noise * rs.randn(n, 2), y[order]


def _circles(rs, n, features, classes, noise):
    n_out = n // 2
    n_in = n - n_out
    t_out = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    t_in = np.linspace(0, 2 * np.pi, n_in, endpoint=False)
    x = np.concatenate([
        np.stack([np.cos(t_out), np.sin(t_out)], axis=1),
        0.5 * np.stack([np.cos(t_in), np.sin(t_in)], axis=1),
    ])
    y = np.concatenate([np.zeros(n_out, np.int64), np.ones(n_in, np.int64)])
    order = rs.permutation(n)
    return x[order] + noise * rs.randn(n, 2), y[order]


def _spirals(rs, n, features, classes, noise):
    y = np.arange(n) % classes
    t = rs.uniform(0.25, 1.0, n)
    angle = 3 * np.pi * t + 2 * np.pi * y / classes
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    return x + noise * rs.randn(n, 2), y.astype(np.int64)


def _blobs(rs, n, features, classes, noise):
    centers = rs.uniform(-5.0, 5.0, size=(classes, features))
    y = rs.randint(0, classes, n)
    # noise is the cluster's standard deviation here; 0 would make every point its centre.
    x = centers[y] + max(noise, 1e-3) * rs.randn(n, features)
    return x, y.astype(np.int64)


def _regression(rs, n, features, classes, noise):
    x = rs.randn(n, features)
    w = rs.uniform(-2.0, 2.0, features)
    y = x @ w + 0.5 + noise * rs.randn(n)
    return x, y


def _sine(rs, n, features, classes, noise):
    x = rs.uniform(-np.pi, np.pi, size=(n, features))
    y = np.sin(x).sum(axis=1) + noise * rs.randn(n)
    return x, y


def _friedman(rs, n, features, classes, noise):
    x = rs.rand(n, features)
    y = (10 * np.sin(np.pi * x[:, 0] * x[:, 1]) + 20 * (x[:, 2] - 0.5) ** 2
         + 10 * x[:, 3] + 5 * x[:, 4] + noise * rs.randn(n))
    return x, y


GENERATORS: dict[str, Generator] = {
    "random": Generator(_random, "classification",
                        "the tutorial's data: uniform [0,1) inputs, random labels (pure noise)"),
    "linear": Generator(_linear, "classification", "two classes split by a random hyperplane"),
    "xor": Generator(_xor, "classification", "XOR of the signs of the first two inputs", 2),
    "moons": Generator(_moons, "classification", "two interleaving half circles", 2),
    "circles": Generator(_circles, "classification", "a small circle inside a large one", 2),
    "spirals": Generator(_spirals, "classification", "interleaved spiral arms, one per class", 2),
    "blobs": Generator(_blobs, "classification", "Gaussian clusters, one per class"),
    "regression": Generator(_regression, "regression", "a linear function plus Gaussian noise"),
    "sine": Generator(_sine, "regression", "sum of sin(x_i) plus Gaussian noise", 1, 1),
    "friedman": Generator(_friedman, "regression", "Friedman #1: a non-linear function of "
                          "5 inputs (more are ignored)", 5, 5),
}

# Generators that draw exactly two input columns.
TWO_D = {"moons", "circles", "spirals"}


def n_features(name: str, features: int | None) -> int:
    """The input columns a generator draws."""
    return 2 if name in TWO_D else (features or GENERATORS[name].default_features)


def generate(name: str, samples: int, features: int | None = None, classes: int = 2,
             noise: float = 0.1, seed: int = 0) -> Arrays:
    """Draw a dataset: x as float32 (samples, features), y as int64 labels or float32 values."""
    gen = GENERATORS[name]
    features = n_features(name, features)
    rs = np.random.RandomState(seed)
    x, y = gen.make(rs, samples, features, classes, noise)
    y = y.astype(np.int64) if gen.task == "classification" else y.astype(np.float32)
    return x.astype(np.float32), y
