"""Export a trained model for serving or devices (``nntrain export``), and check the export.

Every export is run on a sample of the data and compared with the Keras model before it is
moved into place: an export that disagrees beyond its tolerance is an error, not a file.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import tempfile
import warnings
from typing import Literal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nntrain import backend
from nntrain.data.images import is_picture_source
from nntrain.errors import ExportMismatch, NntrainError, UsageError
from nntrain.runs.rundir import atomic_write
from nntrain.tf import quiet_stderr
from nntrain.use.pictures import without_augmentation
from nntrain.use.load import (InputRows, Trained, first_rows, load_trained, predict_all,
                             run_rows)


# How far the export may be from the Keras model on the sample: (statistic of |exported -
# keras|, bound relative to max(1, largest |output|)). float32 exports differ only by the order
# of floating-point operations; float16 weights keep about 3 significant digits. int8 quantizes
# activations too: a row near a steep decision boundary can move a lot (0.2 in probability on
# the moons example), so it is judged by the mean difference, a check that the file computes
# the same function, not a promise of accuracy.
TOLERANCE = {None: ("max", 1e-4), "float16": ("max", 1e-2), "int8": ("mean", 0.05)}
SAMPLE_ROWS = 256  # rows the export is checked on
CALIBRATION_ROWS = 500  # training rows int8 quantization calibrates its ranges on
ONNX_OPSET = 17
ONNX_HINT = "install it with: pip install 'nntrain[onnx]' (tf2onnx and onnxruntime)"


@dataclass
class Exported:
    path: Path
    format: str
    quantize: str | None
    rows: int  # rows the export was checked on
    max_diff: float
    mean_diff: float
    statistic: str  # which difference the tolerance bounds: "max" or "mean"
    tolerance: float  # relative to max(1, largest |output|)
    size: int  # bytes


def export_model(model: str | Path, fmt: Literal["savedmodel", "tflite", "onnx"], *,
                 quantize: Literal["float16", "int8"] | None = None,
                 output: str | Path | None = None, force: bool = False,
                 data: str | None = None, tolerance: float | None = None) -> Exported:
    """Write the model as a SavedModel directory, a .tflite or an .onnx file, checked."""
    if quantize is not None and fmt != "tflite":
        raise UsageError("--quantize applies to --format tflite only")
    if backend.imported() is None:
        # Every format is TensorFlow's; JAX would only add a jax2tf conversion.
        backend.use("tensorflow")
    convert = _converter(fmt)  # fails before the model loads when ONNX support is missing
    if backend.imported() != "tensorflow" and (fmt == "onnx" or quantize == "int8"):
        # tf2onnx cannot convert the graph jax2tf makes, and int8 TFLite from it divides by
        # zero when it runs.
        what = "--format onnx" if fmt == "onnx" else "--quantize int8"
        raise UsageError(f"{what} needs the tensorflow backend, and this process imported "
                         f"Keras on {backend.imported()}; run `nntrain export` in a fresh "
                         "process (any run's model.keras loads on either backend)")
    trained = load_trained(model)
    if trained.table is not None:
        raise UsageError.in_file(trained.name, "export of a run with column types "
                      "(data.columns, or categorical columns) is not built yet; its model.keras "
                      "takes raw rows in Keras")
    dest = Path(output) if output is not None else default_path(trained, fmt, quantize)
    if (dest.exists() or dest.is_symlink()) and not force:
        raise UsageError.in_file(dest, "exists already; pass --force to replace it")
    if output is not None and not dest.parent.is_dir():
        raise UsageError.in_file(dest.parent, "no such directory")
    sample, calibration = _rows(trained, data)
    expected = predict_all(trained, sample)
    # Exported without the augmentation layers (identity outside training); checked against
    # the whole model.
    trained = dataclasses.replace(trained, model=without_augmentation(trained.model))
    statistic, tol = TOLERANCE[quantize]
    tol = tolerance if tolerance is not None else tol
    made_folder = not dest.parent.exists()  # RUN_DIR/export/ the first time
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A SavedModel is a directory: written to a hidden sibling, renamed into place once checked.
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with quiet_stderr(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TFLite's deprecation notices are not the user's
            if fmt == "savedmodel":
                got, size = _saved_model(trained, tmp, sample), _tree_size(tmp)
            else:
                blob, run = convert(trained, quantize, calibration)
                got, size = run(blob, sample), len(blob)
        diffs = _check(got, expected, statistic, tol, fmt, quantize)
        if fmt == "savedmodel":
            _replace_dir(tmp, dest)
        else:
            atomic_write(dest, lambda fh: fh.write(blob))
    except BaseException:
        if made_folder and not any(p != tmp for p in dest.parent.iterdir()):
            shutil.rmtree(dest.parent, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Exported(dest, fmt, quantize, len(sample), *diffs, statistic, tol, size)


def default_path(trained: Trained, fmt: str, quantize: str | None) -> Path:
    """RUN_DIR/export/model.tflite (model-int8.tflite, saved_model/, model.onnx); for a bare
    file, beside it: NAME.tflite, NAME_saved_model/, NAME.onnx."""
    if trained.run_dir is not None:
        folder, stem = trained.run_dir / "export", "model"
    else:
        folder, stem = trained.path.parent, trained.path.stem
    if fmt == "savedmodel":
        return folder / ("saved_model" if trained.run_dir is not None else f"{stem}_saved_model")
    suffix = f"-{quantize}" if quantize else ""
    return folder / f"{stem}{suffix}.{fmt}"


def _rows(trained: Trained, data: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(rows to check on, rows to calibrate int8 on): the run's data, or --data FILE."""
    if data is not None and is_picture_source(data):
        from nntrain.use.pictures import picture_sample

        x = picture_sample(trained, data, max(SAMPLE_ROWS, CALIBRATION_ROWS))
        sample, calibration = x[:SAMPLE_ROWS], x[:CALIBRATION_ROWS]
    elif data is not None:
        rows = InputRows(data, trained)
        try:
            x = next(iter(rows), np.zeros((0, *trained.input_shape), np.float32))
        finally:
            rows.close()  # the first chunk is plenty
        sample, calibration = x[:SAMPLE_ROWS], x[:CALIBRATION_ROWS]
    elif trained.run_dir is None:
        raise UsageError.in_file(trained.path, "a bare model file has no data to check the "
                      "export with; pass --data FILE (a CSV of inputs)")
    else:
        # The data only needs to look like the run's: an edited file still checks the export.
        ds = run_rows(trained, check_fingerprint=False)
        # Check on rows calibration did not see first: test, then validation, then training.
        sample = first_rows(ds, ("test", "validation", "train"), SAMPLE_ROWS)
        calibration = first_rows(ds, ("train",), CALIBRATION_ROWS)
    if not len(sample):
        raise UsageError("no data rows to check the export with")
    return sample, calibration


def _check(got: np.ndarray, expected: np.ndarray, statistic: str, tol: float, fmt: str,
           quantize: str | None) -> tuple[float, float]:
    """(max, mean) |exported - keras|; an error when the chosen one is beyond tolerance."""
    diff = np.abs(np.asarray(got, dtype=np.float64).reshape(expected.shape) - expected)
    largest, mean = (float(diff.max()), float(diff.mean())) if diff.size else (0.0, 0.0)
    scale = max(1.0, float(np.abs(expected).max()) if expected.size else 1.0)
    judged = largest if statistic == "max" else mean
    if not np.isfinite(judged) or judged > tol * scale:
        what = f"{fmt} ({quantize})" if quantize else fmt
        raise ExportMismatch(f"the {what} export disagrees with the Keras model: {statistic} abs "
                             f"difference {judged:.3g} on {len(expected)} rows, tolerance "
                             f"{tol * scale:.3g}; nothing was written",
                             hint="pass --tolerance to accept a larger difference")
    return largest, mean


# --- SavedModel --------------------------------------------------------------------------

def _saved_model(trained: Trained, folder: Path, sample: np.ndarray) -> np.ndarray:
    """Export to ``folder`` and run the sample through the reloaded SavedModel."""
    import tensorflow as tf

    shutil.rmtree(folder, ignore_errors=True)  # left by a killed export
    folder.mkdir()  # mkdir, not mkdtemp: the directory gets the usual permissions
    trained.model.export(str(folder), format="tf_saved_model", verbose=False)
    served = tf.saved_model.load(str(folder))  # keep it: its variables die with it
    return served.serve(tf.constant(sample)).numpy()


def _replace_dir(src: Path, dest: Path) -> None:
    """Rename the checked export into place; with --force the old one goes only after."""
    if not (dest.exists() or dest.is_symlink()):
        os.replace(src, dest)
        return
    trash = dest.with_name(f".{dest.name}.replaced-{os.getpid()}")
    os.replace(dest, trash)
    os.replace(src, dest)
    if trash.is_dir() and not trash.is_symlink():
        shutil.rmtree(trash, ignore_errors=True)
    else:
        trash.unlink()


def _tree_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


# --- TFLite and ONNX: bytes, checked in memory before they are written --------------------

Runner = Callable[[bytes, np.ndarray], np.ndarray]
Converter = Callable[[Trained, str | None, np.ndarray], tuple[bytes, Runner]]


def _converter(fmt: str) -> Converter | None:
    if fmt == "tflite":
        return _to_tflite
    if fmt == "onnx":
        # Only looked up here (importing tf2onnx imports TensorFlow, loudly); imported later.
        for package in ("tf2onnx", "onnxruntime"):  # onnxruntime checks the export
            if importlib.util.find_spec(package) is None:
                raise UsageError(f"exporting to ONNX needs the '{package}' package; "
                                 f"{ONNX_HINT}")
        return _to_onnx
    return None


def _to_tflite(trained: Trained, quantize: str | None,
               calibration: np.ndarray) -> tuple[bytes, Runner]:
    import tensorflow as tf
    from tensorflow.lite.python.convert_phase import ConverterError

    # Converting from a SavedModel is the path TFLite supports best for Keras 3 models.
    with tempfile.TemporaryDirectory() as tmp:
        trained.model.export(tmp, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if quantize is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            # Inputs and outputs stay float32, so the file is used the same way as the others.
            converter.representative_dataset = lambda: (
                [calibration[i:i + 1]] for i in range(len(calibration)))
        try:
            blob = converter.convert()
        except ConverterError as exc:  # an op TFLite has no kernel for, and the like
            raise NntrainError(f"TFLite conversion failed: {_first_line(exc)}") from None
    return blob, _run_tflite


def _run_tflite(blob: bytes, x: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=blob)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x.astype(np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])


def _to_onnx(trained: Trained, quantize: str | None,
             calibration: np.ndarray) -> tuple[bytes, Runner]:
    import tensorflow as tf

    try:
        import tf2onnx
    except ImportError as exc:
        raise UsageError(f"the ONNX converter does not import: {exc}; {ONNX_HINT}") from None
    model = trained.model
    spec = (tf.TensorSpec([None, *model.input_shape[1:]], tf.float32, name="inputs"),)
    forward = tf.function(lambda inputs: model(inputs, training=False))
    try:
        proto, _ = tf2onnx.convert.from_function(forward, input_signature=spec,
                                                 opset=ONNX_OPSET)
    except (ValueError, NotImplementedError) as exc:  # ops ONNX has no equivalent for
        raise NntrainError(f"ONNX conversion failed: {_first_line(exc)}") from None
    return proto.SerializeToString(), _run_onnx


def _run_onnx(blob: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(blob, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
