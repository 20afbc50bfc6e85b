"""Pictures of a run, drawn as PNG files without a display.

matplotlib is imported inside the functions, so `nntrain --help` and runs with
``output.plots: false`` never load it. Figures are made with matplotlib's object API (a Figure on
the Agg canvas) rather than pyplot: no GUI backend is ever chosen and no global state is left
behind. Every file is written atomically, like the rest of the run directory.

A training run draws in two steps: plot_jobs computes what the pictures need (the model's
predictions included) and draw() draws them, in a helper process when that saves time (see
Painter), whose entry point is _helper.
"""

from __future__ import annotations

import contextlib
import dataclasses
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nntrain.runs.rundir import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from nntrain.data.dataset import Dataset
    from nntrain.targets import Targets

CURVES = "curves.png"
DECISION_BOUNDARY = "decision_boundary.png"
PREDICTED_VS_ACTUAL = "predicted_vs_actual.png"
CONFUSION_MATRIX = "confusion_matrix.png"
IMAGE_GRID = "test_pictures.png"

DPI = 100
# Decision-boundary resolution per axis: 150 x 150 predictions take a few milliseconds for the
# small dense models this is drawn for, and the contours look smooth at this size.
GRID = 150
# Scatter plots beyond this many points are slow to draw and no easier to read.
MAX_POINTS = 5000
# Rows per forward pass when predicting for a plot: bounds memory for large grids or splits.
CHUNK = 16384
# Test pictures in a run's image grid: a 5 x 5 grid shows what the model gets wrong, and is
# small to draw.
MAX_PICTURES = 25
MISS = "#d62728"
# Colours per class (matplotlib's tab10); classes beyond ten cycle.
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


# One picture to draw: (the name of a drawing function in DRAW, args, kwargs), plain data only;
# the last of the args is the file to write.
Job = tuple[str, tuple[Any, ...], dict[str, Any]]


def plot_jobs(model: Any, ds: Dataset, targets: Targets, directory: Path,
              history: dict[str, list[float]]) -> list[Job]:
    """What every picture that fits this run needs, the model's predictions computed here."""
    jobs: list[Job] = [("curves", (history, directory / CURVES), {})]
    if ds.streamed:
        # The rows stay in the file (data.stream): too many to plot. Pictures (source: images)
        # get a grid of test pictures with their predicted labels.
        return jobs + image_grid_jobs(model, ds, targets, directory)
    if targets.task == "regression":
        split, x, y = next((s, x, y) for s, x, y in (("test", ds.x_test, ds.y_test),
                                                      ("validation", ds.x_val, ds.y_val),
                                                      ("train", ds.x_train, ds.y_train))
                           if len(x))
        jobs.append(("predicted_vs_actual", (y, predict(model, x),
                                             directory / PREDICTED_VS_ACTUAL), {"split": split}))
    elif ds.x_train.ndim == 2 and ds.n_features == 2 and ds.table is None:  # an index is no axis
        x = np.concatenate([ds.x_train, ds.x_val, ds.x_test])
        y = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
        g0, g1 = boundary_grid(x)
        out = predict(model, np.column_stack([g0.ravel(), g1.ravel()]).astype(np.float32))
        jobs.append(("decision_boundary", (g0, g1, out, x, targets.class_indices(y),
                                           directory / DECISION_BOUNDARY),
                     {"binary": targets.task == "binary", "labels": targets.classes,
                      "axis_names": ds.feature_names}))
    return jobs


def draw(jobs: list[Job]) -> list[Path]:
    return [DRAW[name](*args, **kwargs) for name, args, kwargs in jobs]


class Painter:
    """Draws a run's pictures, in a helper process when that saves time.

    Importing matplotlib costs about 0.4 s, as much as training the tutorial's example. So
    `nntrain train` starts a helper Python process (_helper) as it starts: the helper
    imports matplotlib on another core while TensorFlow loads and the model trains, then
    receives the plot jobs (plain arrays: it never loads TensorFlow) and draws while the run
    saves its model. If the helper cannot start or fails, the pictures are drawn here instead,
    so a run never loses them; so they are, too, in a process that has matplotlib loaded
    already (a notebook, the tests), where drawing costs little.
    """

    TIMEOUT = 300  # seconds to wait for the helper's pictures before drawing them here

    def __init__(self, proc: subprocess.Popen[bytes] | None) -> None:
        self._proc = proc
        self._jobs: list[Job] = []
        self._sender: threading.Thread | None = None

    @classmethod
    @contextlib.contextmanager
    def start(cls, enabled: bool, *, helper: bool | None = None,
              command: list[str] | None = None) -> Iterator[Painter]:
        """A painter for one run; the helper, if any, is stopped when the block ends.
        helper: whether to start one; by default, when this process has no matplotlib yet."""
        proc = None
        if helper is None:
            helper = "matplotlib" not in sys.modules
        if enabled and helper:
            # Isolated (-I: no working directory or PYTHONPATH on sys.path), with this very
            # nntrain first, so that no other checkout in the working directory stands in.
            root = str(Path(__file__).resolve().parent.parent)
            code = (f"import sys; sys.path.insert(0, {root!r}); "
                    "from nntrain.plots import _helper; sys.exit(_helper())")
            try:
                proc = subprocess.Popen(command or [sys.executable, "-I", "-c", code],
                                        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
            except OSError:
                proc = None
        painter = cls(proc)
        try:
            yield painter
        finally:
            painter.stop()

    def submit(self, jobs: list[Job]) -> None:
        """Start drawing; finish() waits for the pictures. The jobs (a megabyte or so) go
        down the pipe from a thread, so that a helper still importing cannot hold the run."""
        self._jobs = jobs
        proc = self._proc
        if proc is None or proc.stdin is None:
            return
        stdin = proc.stdin

        def send() -> None:
            with contextlib.suppress(OSError, ValueError):  # the helper died, or was stopped
                stdin.write(pickle.dumps(jobs))
                stdin.close()
        self._sender = threading.Thread(target=send, name="nntrain-plots", daemon=True)
        self._sender.start()

    def finish(self) -> list[Path]:
        """The files written: by the helper, or drawn here if it could not."""
        if self._proc is not None:
            try:
                code = self._proc.wait(timeout=self.TIMEOUT)
            except subprocess.TimeoutExpired:
                code = None
            self.stop()
            files = [Path(args[-1]) for _, args, _ in self._jobs]
            if code == 0 and all(f.exists() for f in files):
                return files
        return draw(self._jobs)

    def stop(self) -> None:
        """End the helper, if it still runs (the run failed or stopped: no pictures)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if self._sender is not None:
            self._sender.join()
        if proc.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                proc.stdin.close()


def _helper() -> int:
    """The helper process: import matplotlib, then draw the jobs the run sends on stdin (a
    pickle from the parent process, through a pipe only it holds). End without drawing when
    stdin closes empty: the run stopped or failed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's to handle; it ends us
    from matplotlib import font_manager

    _figure(4, 3)  # imports what drawing needs
    font_manager.findfont("DejaVu Sans")
    data = sys.stdin.buffer.read()
    if data:
        draw(pickle.loads(data))
    return 0


def predict(model: Any, x: np.ndarray) -> np.ndarray:
    """The model's outputs for x, in chunks, as a float array of shape (rows, outputs)."""
    from keras import ops

    # Calling the model directly (not model.predict) skips building and tracing a predict
    # function, which costs more than the forward passes themselves at these sizes.
    parts = [ops.convert_to_numpy(model(x[i:i + CHUNK], training=False))
             for i in range(0, len(x), CHUNK)]
    out = np.concatenate(parts).astype(np.float64)
    return out.reshape(len(x), -1)


def plot_curves(history: dict[str, list[float]], path: Path) -> Path:
    """Loss and each metric per epoch, training against validation, one panel each."""
    from matplotlib.ticker import MaxNLocator

    names = [k for k in history if k != "epoch" and not k.startswith("val_")]
    names += [k[4:] for k in history if k.startswith("val_") and k[4:] not in names]
    names.sort(key=lambda k: k != "loss")  # loss first, then the metrics in their order
    n = len(next(iter(history.values()), []))
    epochs = history.get("epoch") or list(range(1, n + 1))
    cols = min(3, max(1, len(names)))
    rows = -(-max(1, len(names)) // cols)
    fig = _figure(4.2 * cols, 3.2 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    marker = "o" if n <= 40 else None  # a single epoch is still visible as a point
    for ax, name in zip(axes, names):
        for key, label, colour in ((name, "training", PALETTE[0]),
                                   (f"val_{name}", "validation", PALETTE[3])):
            if key in history:
                ax.plot(epochs, history[key], label=label, color=colour, marker=marker,
                        markersize=3, linewidth=1.5)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(frameon=False)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    return _save(fig, path)


def boundary_grid(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The GRID x GRID points of the plane of the two inputs around the rows x."""
    lo, hi = x.min(axis=0), x.max(axis=0)
    pad = np.where(hi > lo, (hi - lo) * 0.08, 1.0)
    return np.meshgrid(np.linspace(lo[0] - pad[0], hi[0] + pad[0], GRID),
                       np.linspace(lo[1] - pad[1], hi[1] + pad[1], GRID))


def plot_decision_boundary(g0: np.ndarray, g1: np.ndarray, out: np.ndarray, x: np.ndarray,
                           y: np.ndarray, path: Path, *, binary: bool, labels: Sequence[str],
                           axis_names: Sequence[str] = ("x0", "x1")) -> Path:
    """The classes the model predicts over the plane of the two inputs, the rows over them.

    ``out`` holds the model's outputs at the points of boundary_grid (g0, g1). Binary models
    show the predicted probability of class 1 as shading, with the 0.5 line (the threshold the
    accuracy metric uses); multi-class models show the predicted class as areas.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.lines import Line2D

    fig = _figure(6.6, 5.2, right=0.1)
    ax = fig.subplots()
    n_classes = max(len(labels), int(y.max()) + 1 if len(y) else 2)
    colours = [PALETTE[i % len(PALETTE)] for i in range(n_classes)]
    if binary:
        field = np.clip(out[:, 0], 0.0, 1.0).reshape(g0.shape)
        shade = ax.contourf(g0, g1, field, levels=np.linspace(0, 1, 11), cmap="RdBu_r",
                            alpha=0.45, vmin=0, vmax=1)
        ax.contour(g0, g1, field, levels=[0.5], colors="black", linewidths=1.2)
        fig.colorbar(shade, ax=ax, label=f"predicted probability of {labels[1]}")
        colours = ["#1f4e99", "#b2182b"]
    else:
        classes = np.argmax(out, axis=1).reshape(g0.shape)
        ax.contourf(g0, g1, classes, levels=np.arange(n_classes + 1) - 0.5,
                    cmap=ListedColormap(colours), alpha=0.3)
    shown = _sample(len(x))
    ax.scatter(x[shown, 0], x[shown, 1], c=[colours[c % len(colours)] for c in y[shown]],
               s=12, edgecolors="white", linewidths=0.4)
    handles = [Line2D([], [], marker="o", linestyle="", color=colours[i % len(colours)],
                      label=str(labels[i]) if i < len(labels) else str(i))
               for i in sorted(set(y[shown].tolist()))]
    ax.legend(handles=handles, title="actual class", frameon=True, fontsize="small")
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    ax.set_title(f"decision boundary ({len(x)} rows)")
    return _save(fig, path)


def plot_predicted_vs_actual(actual: np.ndarray, predicted: np.ndarray, path: Path, *,
                             split: str = "test") -> Path:
    """Each row's prediction against its true value; perfect predictions lie on the diagonal."""
    actual = np.asarray(actual, dtype=np.float64).reshape(-1)
    predicted = np.asarray(predicted, dtype=np.float64).reshape(-1)
    fig = _figure(5.2, 5.0)
    ax = fig.subplots()
    shown = _sample(len(actual))
    ax.scatter(actual[shown], predicted[shown], s=12, alpha=0.6, color=PALETTE[0],
               edgecolors="none")
    both = np.concatenate([actual, predicted])
    lo, hi = float(both.min()), float(both.max())
    pad = (hi - lo) * 0.05 or 1.0
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], linestyle="--", color="gray",
            linewidth=1, label="predicted = actual")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal")
    residual = predicted - actual
    spread = float(np.sum((actual - actual.mean()) ** 2))
    r2 = 1 - float(np.sum(residual ** 2)) / spread if spread > 0 else float("nan")
    ax.text(0.04, 0.96, f"R² {r2:.3f}\nMAE {np.mean(np.abs(residual)):.4g}",
            transform=ax.transAxes, va="top",
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8})
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title(f"predicted vs actual ({split} rows, n={len(actual)})")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", frameon=False)
    return _save(fig, path)


def plot_confusion_matrix(matrix: Any, labels: Sequence[str], path: Path, *,
                          title: str = "confusion matrix") -> Path:
    """Counts of each actual class (rows) against each predicted class (columns).

    ``matrix[i][j]`` is the number of rows of class ``labels[i]`` predicted as ``labels[j]``
    (scikit-learn's convention). The diagonal holds the correct predictions.
    """
    m = np.asarray(matrix)
    n = m.shape[0]
    if m.ndim != 2 or m.shape != (n, n) or len(labels) != n:
        raise ValueError(f"a confusion matrix is square with one label per row; got shape "
                         f"{m.shape} and {len(labels)} labels")
    size = min(4.0 + 0.45 * n, 16.0)
    fig = _figure(size + 1.4, size, left=0.5 + 0.07 * max(map(len, map(str, labels)), default=1),
                  right=0.1)
    ax = fig.subplots()
    image = ax.imshow(m, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, label="rows")
    if n <= 30:  # beyond that the numbers no longer fit in their cells
        threshold = m.max() / 2 if m.size else 0
        for i in range(n):
            for j in range(n):
                value = m[i, j]
                text = f"{value:g}" if np.issubdtype(m.dtype, np.floating) else f"{value:d}"
                ax.text(j, i, text, ha="center", va="center",
                        color="white" if value > threshold else "black")
    ticks = np.arange(n)
    long = max((len(str(label)) for label in labels), default=0) > 3
    ax.set_xticks(ticks, [str(label) for label in labels], rotation=45 if long else 0,
                  ha="right" if long else "center")
    ax.set_yticks(ticks, [str(label) for label in labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    return _save(fig, path)


def image_grid_jobs(model: Any, ds: Dataset, targets: Targets, directory: Path) -> list[Job]:
    """The grid of test pictures (predicted label over each, misses framed in red with the
    true one) for a run on pictures (data/images.py); nothing for other data."""
    from nntrain.data.images import is_image_dataset

    if not is_image_dataset(ds):
        return []
    split = next((s for s in ("test", "validation", "train") if len(ds.split(s)[0])), None)
    if split is None:
        return []
    rows = ds.split(split)[0]
    # A fixed sample across the split (its files are in class order): every class shows.
    pick = np.sort(np.random.RandomState(0).permutation(len(rows))[:MAX_PICTURES])
    sample = dataclasses.replace(rows, files=[rows.files[i] for i in pick],
                                 labels=rows.labels[pick])
    x, y = next(sample.pipeline(MAX_PICTURES, encoding=ds.target_encoding)
                .as_numpy_iterator())
    predicted, _ = targets.decode(predict(model, x))
    pixels = np.clip(np.round(x), 0, 255).astype(np.uint8)
    return [("image_grid", (pixels, targets.class_indices(y), predicted, targets.classes,
                            directory / IMAGE_GRID), {"split": split})]


def plot_image_grid(pixels: np.ndarray, true: np.ndarray, predicted: np.ndarray,
                    labels: Sequence[str], path: Path, *, split: str = "test") -> Path:
    """Pictures (uint8, rows x height x width x channels) in a grid, each titled with its
    predicted label; a miss is framed in red and titled with the true label too."""
    n = len(pixels)
    cols = min(5, max(n, 1))
    rows = max(1, -(-n // cols))
    height = 1.9 * rows + 0.9
    fig = _figure(1.7 * cols + 0.2, height, left=0.1, right=0.1)
    fig.subplots_adjust(bottom=0.1 / height, top=1 - 0.85 / height, hspace=0.6)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    misses = 0
    for ax, picture, t, p in zip(axes, pixels, true.tolist(), predicted.tolist()):
        gray = picture.shape[-1] == 1
        ax.imshow(picture[..., 0] if gray else picture, cmap="gray" if gray else None,
                  vmin=0, vmax=255, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if t == p:
            ax.set_title(labels[p], fontsize=9)
            continue
        misses += 1
        ax.set_title(f"{labels[p]}\n(true: {labels[t]})", fontsize=9, color=MISS)
        for spine in ax.spines.values():
            spine.set_color(MISS)
            spine.set_linewidth(3)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(f"{n} {split} pictures: the predicted label above each\n{misses} missed "
                 "(framed in red, with the true label)", fontsize=10, y=1 - 0.1 / height)
    return _save(fig, path)


def _figure(width: float, height: float, *, left: float = 0.75, right: float = 0.25,
            wspace: float = 0.3) -> Figure:
    """A figure on the Agg canvas with fixed margins (in inches).

    Fixed margins rather than matplotlib's constrained layout, which measures every label's
    extent and would double the time it takes to draw these small figures.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=0.6 / height,
                        top=1 - 0.4 / height, wspace=wspace, hspace=0.5)
    return fig


def _sample(n: int) -> np.ndarray:
    """At most MAX_POINTS row indices, the same ones every time."""
    if n <= MAX_POINTS:
        return np.arange(n)
    return np.sort(np.random.RandomState(0).choice(n, MAX_POINTS, replace=False))


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=DPI))
    return path


DRAW = {"curves": plot_curves, "predicted_vs_actual": plot_predicted_vs_actual,
        "decision_boundary": plot_decision_boundary, "image_grid": plot_image_grid}
