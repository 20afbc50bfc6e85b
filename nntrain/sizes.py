"""Refuse sizes that cannot fit in this machine's memory before allocating anything, naming the
key and the memory it would take: a typo such as ``samples: 10000000000`` otherwise ends in an
out-of-memory kill or an internal error minutes later."""

from __future__ import annotations

import os
from typing import Any

from nntrain.errors import ConfigError, KeyPath


def physical_memory() -> int | None:
    """Bytes of RAM, or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def generated_bytes(samples: int, features: int) -> int:
    """Peak memory of synthetic.generate: float64 inputs and their noise, the float32 copy,
    and the labels (about 20 bytes per value, 16 per row)."""
    return samples * (features * 20 + 16)


def model_bytes(layers: list[Any], n_inputs: int) -> list[tuple[int, int]]:
    """(layer index, bytes so far) for each layer with ``units``: its weights, their gradients
    and two optimizer slots (Adam's), float32, through a chain of dense-like layers."""
    width, params, out = n_inputs, 0, []
    for i, layer in enumerate(layers):
        units = layer.args.get("units")
        if isinstance(units, int) and units > 0:
            params += width * units + units
            width = units
            out.append((i, params * 4 * 4))
    return out


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def too_big(needed: int) -> str | None:
    """Why ``needed`` bytes cannot be had here, or None when they can."""
    total = physical_memory()
    if total is None or needed <= total:
        return None
    return f"would take about {_gib(needed)} of memory; this machine has {_gib(total)}"


def check_generated(samples: int, features: int, path: KeyPath = ("data", "samples")) -> None:
    if (why := too_big(generated_bytes(samples, features))) is not None:
        raise ConfigError.at(path, f"{samples:,} rows of {features} features {why}")


def check_model(layers: list[Any], n_inputs: int) -> None:
    for i, needed in model_bytes(layers, n_inputs):
        if (why := too_big(needed)) is not None:
            raise ConfigError.at(("model", "layers", i, "units"),
                                 f"the model up to this layer {why} (weights, gradients and "
                                 "optimizer state)")
