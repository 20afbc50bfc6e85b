"""A trained model used on pictures: ``predict`` on a file or a folder, ``eval`` on a folder of
class folders, and the pictures ``export`` checks its file with.

Pictures are read as training read them (data/images.py: the same Pillow check that names a
broken file, the same TensorFlow decoding), at the size and colour mode the model takes. They
are resized to it when the run was trained with ``data.image_size`` (or the model is a bare
.keras file, which does not say); otherwise a picture of another size is an error naming it,
as it was in training. Every picture is checked before the first prediction is written.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from nntrain.config.schema import ImageData
from nntrain.data.dataset import evaluation_batch
from nntrain.data.images import (CHANNELS, Folder, ImageRows, check_pictures, scan_classes,
                                 scan_pictures)
from nntrain.errors import DataError, UsageError
from nntrain.use.load import Trained, forward_pass

BATCH = 256  # pictures per forward pass in predict (fewer when large: ImageRows.batch_rows)


def picture_input(trained: Trained) -> tuple[tuple[int, int], int, bool]:
    """((height, width), channels, resize) of the pictures the model takes."""
    shape = trained.input_shape
    if len(shape) != 3 or shape[-1] not in CHANNELS.values() or None in shape:
        raise UsageError.in_file(trained.name, f"the model takes inputs of shape "
                      f"{list(shape)}, not pictures (height, width, and 1 or 3 channels)")
    data = trained.loaded.config.data if trained.loaded is not None else None
    resize = not (isinstance(data, ImageData) and data.image_size is None)
    return (int(shape[0]), int(shape[1])), int(shape[2]), resize


def _rows(trained: Trained, folder: Folder, labels: list[int]) -> ImageRows:
    size, channels, resize = picture_input(trained)
    check_pictures(folder, size, resize, f"resize it to {size[0]}x{size[1]}, or train with "
                   "data.image_size so that pictures are resized")
    return ImageRows(folder.files, np.asarray(labels, dtype=np.int64), size, channels, resize)


def predict_pictures(trained: Trained, source: str, fmt: str, columns: list[str],
                     on_note: Callable[[str], None] | None = None) -> Iterator[str]:
    """One row per picture: its path, the predicted label and a probability (or score) per
    class; regressors: the path and the predicted value(s). ``columns``: predict's own output
    columns, whose first (the target's name) becomes 'label'. Checked whole before it starts."""
    folder = scan_pictures(source, source)
    note = folder.skipped_note()
    if note and on_note is not None:
        on_note(note)
    rows = _rows(trained, folder, [0] * len(folder.files))
    columns = (["path", "label", *columns[1:]] if trained.targets.is_classifier
               else ["path", *columns])
    return _predict(trained, rows, folder.shown, columns, fmt, forward_pass(trained.model))


def _predict(trained: Trained, rows: ImageRows, shown: list[str], columns: list[str],
             fmt: str, forward: Any) -> Iterator[str]:
    if fmt == "csv":
        yield _csv([columns])
    done = 0
    for x, _ in rows.pipeline(rows.batch_rows(BATCH)).as_numpy_iterator():
        outputs = forward(x)
        paths = shown[done:done + len(x)]
        done += len(x)
        if trained.targets.is_classifier:
            predicted, values = trained.targets.decode(outputs)
            names = trained.targets.classes if fmt == "csv" else trained.targets.class_labels
            records = [[p, names[k], *v] for p, k, v in zip(paths, predicted.tolist(),
                                                             values.tolist())]
        else:
            records = [[p, *v] for p, v in zip(paths, outputs.tolist())]
        if fmt == "csv":
            yield _csv([[c if isinstance(c, str) else "%.9g" % c for c in r] for r in records])
        else:
            yield "".join(json.dumps(dict(zip(columns, [_finite(c) for c in r]))) + "\n"
                          for r in records)


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _csv(records: list[list[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(records)
    return buf.getvalue()


def labeled_pictures(trained: Trained, source: str
                     ) -> tuple[dict[str, Any], Iterator[tuple[np.ndarray, np.ndarray]], str]:
    """A folder of class folders, for eval: (model.evaluate's inputs, (x, y) batches, name).
    Class folders are matched to the model's classes by name; a folder may lack some."""
    targets = trained.targets
    if not targets.is_classifier:
        raise UsageError.in_file(trained.name, "the model is a regressor, but a folder of "
                      "class folders labels pictures by class")
    folder = scan_classes(source, source)
    index = {c: i for i, c in enumerate(targets.classes)}
    for cls in folder.classes:
        if cls not in index:
            hint = (None if targets.labels else "a bare .keras file has no class names: use "
                    "the run directory, whose labels.json has them")
            raise DataError.in_file(os.path.join(source, cls), f"'{cls}' is not a class of the "
                                    f"model; it knows {', '.join(targets.classes)}", hint=hint)
    rows = _rows(trained, folder, [index[folder.classes[k]] for k in folder.labels])
    encoding = (targets.task, len(targets.classes))
    batches = ((x, y) for x, y in rows.pipeline(rows.batch_rows(BATCH), encoding=encoding)
               .as_numpy_iterator())
    batch = evaluation_batch(rows, trained.training.batch_size)  # as training evaluated
    return {"x": rows.pipeline(batch, encoding=encoding)}, batches, source


def picture_sample(trained: Trained, source: str, limit: int) -> np.ndarray:
    """Up to ``limit`` pictures of a file or folder, as the model's input (for export)."""
    folder = scan_pictures(source, source)
    folder.files, folder.shown = folder.files[:limit], folder.shown[:limit]
    folder.relative = folder.relative[:limit]
    rows = _rows(trained, folder, [0] * len(folder.files))
    return np.concatenate([x for x, _ in rows.pipeline(limit).as_numpy_iterator()])


def without_augmentation(model: Any) -> Any:
    """The model without its random_* layers, for export: they pass pictures through unchanged
    outside training, but their graph still holds random-number ops that TFLite has no
    kernels for. The layers (and weights) are shared, not copied; export's check compares the
    result with the whole model."""
    from nntrain import registry
    from nntrain.tf import import_keras

    keras = import_keras()
    random = tuple(getattr(keras.layers, registry.LAYERS[name]) for name in registry.LAYERS
                   if name.startswith("random_"))
    if not isinstance(model, keras.Sequential) or \
            not any(isinstance(layer, random) for layer in model.layers):
        return model
    kept = [layer for layer in model.layers if not isinstance(layer, random)]
    return keras.Sequential([keras.Input(shape=model.input_shape[1:]), *kept], name=model.name)
