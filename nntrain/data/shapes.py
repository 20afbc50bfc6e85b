"""A synthetic picture dataset: circles, squares and triangles as image folders.

``nntrain generate-data shapes -n 600 -o shapes/`` writes ``shapes/circle/0000.png``,
``shapes/square/0001.png``, ... (one sub-folder per class, the layout ``source: images`` reads),
so the example config and the tests need no download. Each picture is one filled shape at a
random size and place, in a random colour on a random background of clearly different
brightness, with Gaussian pixel noise. Drawn from ``numpy.random.RandomState(seed)``: the same
seed gives the same pixels on every numpy version.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from nntrain.errors import UsageError

CLASSES = ("circle", "square", "triangle")
DEFAULT_SIZE = 32
MIN_SIZE = 8  # below this a triangle and a circle are a few pixels that look alike


def draw_shapes(samples: int, size: int = DEFAULT_SIZE, noise: float = 0.1,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(pictures as uint8 (samples, size, size, 3), class indices into CLASSES); the classes
    take turns so that every class has samples // 3 pictures or one more."""
    rs = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    pictures = np.empty((samples, size, size, 3), np.uint8)
    classes = np.arange(samples) % len(CLASSES)
    for i, k in enumerate(classes):
        r = rs.uniform(0.18, 0.38) * size  # the shape's "radius"
        cy, cx = rs.uniform(r, size - r, 2)
        if CLASSES[k] == "circle":
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2
        elif CLASSES[k] == "square":
            half = r * 0.85  # the same area as the circle, roughly
            mask = (np.abs(yy - cy) <= half) & (np.abs(xx - cx) <= half)
        else:  # a triangle pointing up or down
            top, bottom = cy - r, cy + r
            if rs.rand() < 0.5:
                top, bottom = bottom, top
            t = (yy - top) / (bottom - top)  # 0 at the apex, 1 at the base
            mask = (t >= 0) & (t <= 1) & (np.abs(xx - cx) <= t * r * 1.1)
        background = rs.uniform(0, 255, 3)
        # The shape's brightness differs from the background's by at least 80 of 255.
        shift = rs.uniform(80, 175) * (1 if background.mean() < 128 else -1)
        foreground = np.clip(background + shift + rs.uniform(-40, 40, 3), 0, 255)
        picture = np.where(mask[..., None], foreground, background)
        picture = picture + noise * 255 * rs.randn(size, size, 3)
        pictures[i] = np.clip(np.round(picture), 0, 255).astype(np.uint8)
    return pictures, classes


def write_shapes(folder: Path, samples: int, size: int = DEFAULT_SIZE, noise: float = 0.1,
                 seed: int = 0, force: bool = False) -> Path:
    """Write the pictures as PNG files into folder/CLASS/NNNN.png; the folder appears whole or
    not at all (written beside it, then renamed)."""
    from PIL import Image

    if samples < len(CLASSES):
        raise UsageError(f"shapes needs at least {len(CLASSES)} pictures (one per class), "
                         f"got {samples}")
    if size < MIN_SIZE:
        raise UsageError(f"--image-size: pictures need at least {MIN_SIZE} pixels a side, "
                         f"got {size}")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder}: exists and is not a folder; shapes are written as a "
                         "folder of pictures")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise UsageError(f"{folder}: exists already and is not empty; pass --force to "
                         "replace it")
    if not folder.resolve().parent.is_dir():
        raise UsageError(f"{folder.parent}: no such directory")
    pictures, classes = draw_shapes(samples, size, noise, seed)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for name in CLASSES:
            (tmp / name).mkdir(parents=True)
        width = max(4, len(str(samples - 1)))
        for i, (picture, k) in enumerate(zip(pictures, classes)):
            Image.fromarray(picture, "RGB").save(tmp / CLASSES[k] / f"{i:0{width}d}.png")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
