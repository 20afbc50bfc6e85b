"""The tutorial's worked example as a hand-written Keras program: the reference that
`nntrain train configs/tutorial.yaml` must reproduce. It never imports nntrain.

One difference from the tutorial's text, because it is the one thing nntrain does differently on
purpose: Keras's `fit(shuffle=True)` draws each epoch's order from TensorFlow's global random
state, which cannot be restored after a restart, so nntrain shuffles each epoch itself with
`numpy.random.RandomState([seed, epoch]).permutation(rows)` (that is what makes `--resume`
bit-exact). This program does the same by hand. With `--no-shuffle` it is the tutorial's code
exactly, with `shuffle=False` passed to `fit`.

Run as a script it prints the test loss and accuracy, and the trained weights, as JSON.
"""

from __future__ import annotations

import json
import os
import sys


def run(seed: int = 42, shuffle: bool = True) -> dict[str, float]:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import numpy as np
    from keras import layers

    keras.utils.set_random_seed(seed)  # seeds Python, NumPy (np.random) and TensorFlow

    # 生成随机数据 / generate random data
    X = np.random.rand(100, 2)
    y = np.random.randint(0, 2, 100)

    # 将数据分为训练集和测试集 / first 80 rows train, last 20 test
    X_train, X_test = X[:80], X[80:]
    y_train, y_test = y[:80], y[80:]

    model = keras.Sequential([
        keras.Input(shape=(2,)),
        layers.Dense(32, activation="relu"),
        layers.Dense(16, activation="relu"),
        layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    if shuffle:
        for epoch in range(10):
            order = np.random.RandomState([seed, epoch]).permutation(len(X_train))
            model.fit(X_train[order], y_train[order], epochs=1, batch_size=32, shuffle=False,
                      verbose=0)
    else:
        model.fit(X_train, y_train, epochs=10, batch_size=32, shuffle=False, verbose=0)
    loss, accuracy = model.evaluate(X_test, y_test, verbose=0)
    return {"loss": float(loss), "accuracy": float(accuracy),
            "weights": [w.tolist() for w in model.get_weights()]}


if __name__ == "__main__":
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 42
    print(json.dumps(run(seed, shuffle="--no-shuffle" not in sys.argv)))
