"""Stream a trained model's predictions (``nntrain predict``): an iterator of text chunks that
the CLI writes to standard output as they come. Loads no training code."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nntrain.data.images import is_picture_source
from nntrain.use.load import BATCH_ROWS, InputRows, Trained, forward_pass, load_trained



def predict(model: str | Path, data: str, *, fmt: Literal["csv", "jsonl"] = "csv",
            on_note: Callable[[str], None] | None = None) -> Iterator[str]:
    """Predictions for every row of a CSV file, as text chunks: a header (CSV), then one chunk
    per BATCH_ROWS input rows. The model and the input header are checked before anything is
    returned; a bad cell further down stops the stream with a DataError naming its line.
    A picture file or a folder of pictures gives one row per picture (use/pictures.py)."""
    trained = load_trained(model)
    if is_picture_source(data):
        from nntrain.use.pictures import predict_pictures

        return predict_pictures(trained, data, fmt, output_columns(trained), on_note)
    reader = InputRows(data, trained)
    forward = forward_pass(trained.model)
    return _stream(trained, reader, forward, _RowFormat(trained, fmt))


def _stream(trained: Trained, reader: InputRows, forward: Any,
            rows: _RowFormat) -> Iterator[str]:
    if rows.header:
        yield rows.header
    for chunk in reader:
        for i in range(0, len(chunk), BATCH_ROWS):
            outputs = forward(chunk[i:i + BATCH_ROWS])
            if trained.targets.is_classifier:
                predicted, values = trained.targets.decode(outputs)
                yield rows.format([rows.labels[k] for k in predicted], values)
            else:
                yield rows.format(None, outputs)


def output_columns(trained: Trained) -> list[str]:
    """The target's name for the prediction, then p_<class> (or score_<class>) per class."""
    target = trained.target
    targets = trained.targets
    if targets.is_classifier:
        prefix = "p_" if targets.probabilistic else "score_"
        return [target, *(f"{prefix}{c}" for c in targets.classes)]
    n = trained.n_outputs
    return [target] if n == 1 else [f"{target}_{i}" for i in range(n)]


class _RowFormat:
    """Text for a chunk of predictions, built with one %-format per row: formatting is most of
    the time predict spends per row, and this is ~2.5x faster than csv.writer or json.dumps."""

    def __init__(self, trained: Trained, fmt: str):
        self.fmt = fmt
        self.columns = output_columns(trained)
        classifier = trained.targets.is_classifier
        n_values = len(self.columns) - 1 if classifier else len(self.columns)
        # %.9g keeps every digit of a float32: the text parses back to the same number.
        if fmt == "csv":
            self.header = _csv_line(self.columns)
            cells = ["%s"] * classifier + ["%.9g"] * n_values
            self.row = ",".join(cells)
            self.labels = [_csv_line([c]).rstrip("\n") for c in trained.targets.classes]
        else:
            self.header = ""
            keys = [json.dumps(c).replace("%", "%%") for c in self.columns]
            cells = [f"{k}: {'%s' if classifier and i == 0 else '%.9g'}"
                     for i, k in enumerate(keys)]
            self.row = "{" + ", ".join(cells) + "}"
            # The user's labels: text labels as strings, numbers (class indices, or numeric
            # labels mapped by labels.json) as numbers.
            self.labels = [json.dumps(c) for c in trained.targets.class_labels]

    def format(self, labels: list[str] | None, values: np.ndarray) -> str:
        if self.fmt == "jsonl" and not np.isfinite(values).all():
            return self._json_slowly(labels, values)  # JSON has no NaN: write null
        columns = values.T.tolist()
        rows = zip(labels, *columns) if labels is not None else zip(*columns)
        return "\n".join(map(self.row.__mod__, rows)) + "\n"

    def _json_slowly(self, labels: list[str] | None, values: np.ndarray) -> str:
        names = self.columns[1:] if labels is not None else self.columns
        lines = []
        for k, row in enumerate(values.tolist()):
            rec: dict[str, Any] = {}
            if labels is not None:
                rec[self.columns[0]] = json.loads(labels[k])
            rec.update((n, v if math.isfinite(v) else None) for n, v in zip(names, row))
            lines.append(json.dumps(rec))
        return "\n".join(lines) + "\n"


def _csv_line(cells: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells)
    return buf.getvalue()
