"""Commented starter configs for `nntrain init`, one per kind of task. Each trains as is on
generated data; the comments say what to change for your own CSV file."""

from __future__ import annotations

TASKS = {
    "binary": "binary classification (two classes, 0 and 1)",
    "multiclass": "multi-class classification (three classes)",
    "regression": "regression (predicting a number)",
}

_HEADER = """\
# nntrain starter config for {summary}.
#
# Train it with `nntrain train {file}`; `nntrain validate {file}` checks it without
# training. `nntrain schema` prints every key (README.md has a table of them). For completion
# in your editor, run `nntrain schema > nntrain.schema.json` and make this the first line:
#   # yaml-language-server: $schema=nntrain.schema.json
"""

_CSV_HINT = """\
  # Your own data: replace the lines above (source to noise) with a CSV file that has a
  # header row; the path is relative to this file:
  #   source: csv
  #   path: data.csv
  #   target: {target:<13}  # the column to predict; every other column is an input
"""

_OUTPUT = """
output:
  dir: runs                  # each run gets runs/<config name>-<date>-<time>/
  # name: first-try          # a fixed run name instead (never replaced without --force)
  plots: true                # PNGs in the run directory: training curves and more
"""

_TRAINING_TAIL = """\
  epochs: {epochs}
  batch_size: 32
  seed: 42                   # the same seed gives the same run
  early_stopping: {{monitor: val_loss, patience: 10}}   # stop when validation stops improving
  # lr_schedule: {{type: cosine_decay, alpha: 0.05}}    # lower the learning rate as it trains
  # tensorboard: true        # logs for `tensorboard --logdir runs`
"""

_BODY = {
    "binary": """\
data:
  source: generate           # rows drawn in memory; `nntrain generate-data --list` shows all
  generator: moons           # two interleaving half circles, labels 0 and 1
  samples: 1000
  noise: 0.2
{csv}  normalize: standard        # each input scaled by the training rows' mean and std,
                             # inside the saved model (real tables need it: see README)
  split:
    validation: 0.1          # watched during training
    test: 0.2                # scored once at the end

model:
  layers:                    # Keras layers in order; arguments as Keras spells them
    - {{type: dense, units: 32, activation: relu}}
    - {{type: dense, units: 32, activation: relu}}
    - {{type: dense, units: 1, activation: sigmoid}}    # one unit: the probability of class 1

training:
  loss: binary_crossentropy
  optimizer: {{name: adam, learning_rate: 0.01}}
  metrics: [accuracy, auc]
""",
    "multiclass": """\
data:
  source: generate           # rows drawn in memory; `nntrain generate-data --list` shows all
  generator: blobs           # Gaussian clusters, one per class
  samples: 1000
  classes: 3
  noise: 1.5
{csv}  normalize: standard        # each input scaled by the training rows' mean and std,
                             # inside the saved model (real tables need it: see README)
  split:
    validation: 0.1          # watched during training
    test: 0.2                # scored once at the end

model:
  layers:                    # Keras layers in order; arguments as Keras spells them
    - {{type: dense, units: 32, activation: relu}}
    - {{type: dropout, rate: 0.1}}
    - {{type: dense, units: 3, activation: softmax}}    # one unit per class

training:
  loss: sparse_categorical_crossentropy   # labels are class numbers 0, 1, 2 (or text in CSV)
  optimizer: {{name: adam, learning_rate: 0.01}}
  metrics: [accuracy]
""",
    "regression": """\
data:
  source: generate           # rows drawn in memory; `nntrain generate-data --list` shows all
  generator: sine            # y = sin(x) + noise
  samples: 1000
  noise: 0.05
{csv}  normalize: standard        # each input scaled by the training rows' mean and std,
                             # inside the saved model (real tables need it: see README)
  target_normalize: standard # the target too; predictions stay in its units
  split:
    validation: 0.1          # watched during training
    test: 0.2                # scored once at the end

model:
  layers:                    # Keras layers in order; arguments as Keras spells them
    - {{type: dense, units: 32, activation: tanh}}
    - {{type: dense, units: 32, activation: tanh}}
    - {{type: dense, units: 1}}                         # one linear unit: the predicted value

training:
  loss: mse                  # mean squared error; mae or huber are less sensitive to outliers
  optimizer: {{name: adam, learning_rate: 0.01}}
  metrics: [mae, r2_score]
""",
}

_EPOCHS = {"binary": 50, "multiclass": 40, "regression": 60}
_TARGET = {"binary": "label", "multiclass": "species", "regression": "price"}


def starter_config(task: str, file: str = "nntrain.yaml") -> str:
    """The starter config for a task (a key of TASKS), mentioning the file it is written to."""
    csv = _CSV_HINT.format(target=_TARGET[task])
    return (_HEADER.format(summary=TASKS[task], file=file) + "\n"
            + _BODY[task].format(csv=csv) + _TRAINING_TAIL.format(epochs=_EPOCHS[task])
            + _OUTPUT)
