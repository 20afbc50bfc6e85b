"""`nntrain export`: every format written atomically and checked against the Keras model."""

from __future__ import annotations

import importlib.util
import re
import warnings

import numpy as np
import pytest

from tiny_runs import shared_runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return shared_runs(tmp_path_factory, "animals", "sine")


def keras_predict(run_dir, x):
    import keras

    return keras.models.load_model(run_dir / "model.keras").predict(x, verbose=0)


def reported_diff(err: str) -> tuple[float, float]:
    """(the judged difference, tolerance) from the line export prints on stderr."""
    m = re.search(r"max abs difference from Keras (\S+), mean (\S+) \(tolerance: (max|mean) "
                  r"(\S+)\)", err)
    assert m, err
    return float(m.group(1) if m.group(3) == "max" else m.group(2)), float(m.group(4))


X = np.array([[0.1, -0.2], [1.2, -0.9], [2.1, -2.2]], dtype=np.float32)


def run_tflite(path, x):
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "tf.lite.Interpreter is deprecated": still the one TF has
        interpreter = tf.lite.Interpreter(model_path=str(path))
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])


def test_savedmodel(cli, runs):
    import tensorflow as tf

    res = cli("export", runs["animals"], "--format", "savedmodel")
    assert res.code == 0, res.err
    path = runs["animals"] / "export" / "saved_model"
    assert res.out == f"{path}\n"
    diff, tol = reported_diff(res.err)
    assert diff <= tol == 1e-4
    served = tf.saved_model.load(str(path))
    np.testing.assert_allclose(served.serve(tf.constant(X)).numpy(),
                               keras_predict(runs["animals"], X), atol=1e-5)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "temp leftovers"


@pytest.mark.parametrize("quantize, name, tolerance", [
    (None, "model.tflite", 1e-4), ("float16", "model-float16.tflite", 1e-2),
    ("int8", "model-int8.tflite", 0.05)])
def test_tflite(cli, runs, quantize, name, tolerance):
    from nntrain.backend import imported

    args = ["--quantize", quantize] if quantize else []
    res = cli("export", runs["animals"], "--format", "tflite", *args)
    path = runs["animals"] / "export" / name
    if imported() == "jax" and quantize == "int8":  # jax2tf's graph does not quantize
        assert res.code == 2 and "int8 needs the tensorflow backend" in res.err
        assert not path.exists()
        return
    assert res.code == 0, res.err
    assert res.out == f"{path}\n" and path.is_file()
    diff, tol = reported_diff(res.err)
    assert diff <= tol == tolerance
    got = run_tflite(path, X)
    assert np.abs(got - keras_predict(runs["animals"], X)).mean() <= tolerance


def test_regression_export_to_a_chosen_path(cli, runs, tmp_path):
    res = cli("export", runs["sine"], "-f", "tflite", "-o", "sine.tflite")
    assert res.code == 0, res.err
    x = np.linspace(-3, 3, 5, dtype=np.float32)[:, None]
    np.testing.assert_allclose(run_tflite(tmp_path / "sine.tflite", x),
                               keras_predict(runs["sine"], x), atol=1e-4)
    res = cli("export", runs["sine"], "-f", "tflite", "-o", "missing/sine.tflite")
    assert res.code == 2 and "no such directory" in res.err


def test_never_overwrites_without_force(cli, runs, tmp_path):
    target = tmp_path / "m.tflite"
    target.write_bytes(b"keep me")
    res = cli("export", runs["sine"], "-f", "tflite", "-o", target)
    assert res.code == 2 and res.err.strip() == f"{target}: exists already; pass --force to " \
                                                "replace it"
    assert target.read_bytes() == b"keep me"
    res = cli("export", runs["sine"], "-f", "tflite", "-o", target, "--force")
    assert res.code == 0 and target.read_bytes() != b"keep me"


def test_an_export_beyond_tolerance_is_an_error_not_a_file(cli, runs, tmp_path):
    # float16, not int8: its weights surely differ, and it exports on either backend
    res = cli("export", runs["animals"], "-f", "tflite", "--quantize", "float16",
              "--tolerance", "0", "-o", "q.tflite")
    assert res.code == 1
    assert "disagrees with the Keras model" in res.err and "nothing was written" in res.err
    assert list(tmp_path.iterdir()) == []


def test_usage_errors(cli, runs):
    res = cli("export", runs["sine"], "-f", "savedmodel", "--quantize", "int8")
    assert res.code == 2 and "--quantize applies to --format tflite only" in res.err
    res = cli("export", runs["sine"], "-f", "pickle")
    assert res.code == 2 and "savedmodel, tflite, onnx" in res.err


@pytest.mark.skipif(importlib.util.find_spec("tf2onnx") is None
                    or importlib.util.find_spec("onnxruntime") is None,
                    reason="pip install 'nntrain[onnx]'")
def test_onnx(cli, runs):
    import onnxruntime

    from nntrain.backend import imported

    res = cli("export", runs["animals"], "--format", "onnx")
    path = runs["animals"] / "export" / "model.onnx"
    if imported() == "jax":  # this process is on JAX: tf2onnx cannot convert jax2tf's graph
        assert res.code == 2 and "onnx needs the tensorflow backend" in res.err
        assert not path.exists()
        return
    assert res.code == 0, res.err
    assert res.out == f"{path}\n"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: X})[0]
    np.testing.assert_allclose(got, keras_predict(runs["animals"], X), atol=1e-5)


def test_onnx_without_the_converter_says_how_to_install_it(cli, runs, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tf2onnx" else real(name, *a))
    res = cli("export", runs["sine"], "--format", "onnx")
    assert res.code == 2
    assert "needs the 'tf2onnx' package" in res.err and "pip install 'nntrain[onnx]'" in res.err
