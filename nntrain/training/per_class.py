"""per_class.csv: precision, recall, F1 and support of every class on every split, written with
each classification run. The numbers are ``nntrain eval``'s (evaluate.per_class)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

PER_CLASS = "per_class.csv"
COLUMNS = ["split", "class", "precision", "recall", "f1", "support"]


def per_class_csv(prepared: Any) -> str:
    """The CSV text for a trained classifier's splits (train, validation, test: those with
    rows). An undefined precision or recall (no row predicted, or none in the class) is empty."""
    from nntrain.runs.rundir import MODEL
    from nntrain.use.evaluate import per_class
    from nntrain.use.load import Trained, forward_pass, split_batches

    ds = prepared.dataset
    trained = Trained(prepared.model, Path(MODEL), None, prepared.loaded,
                      prepared.config.training, prepared.targets, ds.feature_names, "y")
    forward = forward_pass(prepared.model)  # traced once for every split
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(COLUMNS)
    for split in ("train", "validation", "test"):
        if not len(ds.split(split)[0]):
            continue
        for name, scores in per_class(trained, split_batches(ds, split), forward).items():
            out.writerow([split, name, *("" if scores[k] is None else repr(scores[k])
                                         for k in COLUMNS[2:])])
    return buf.getvalue()
