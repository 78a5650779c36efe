"""A tiny functional base whose weights come from NumPy alone, for patch-file fixtures.

`tests/data/patch_v1/` holds a patch written by k4p1's first patch format (a
zip of spec.json + weights.npz, 2026-12-06) onto this base, and the logits its
task model gave; `make_fixture` is how they were made (with k4p1 at commit
dafe7f9, whose `save_patch` still wrote format 1). The base's weights are
set from a seeded NumPy generator, so it is the same base on any machine and
TensorFlow version, and the file's fingerprint check passes.
"""

import keras
import numpy as np

IMAGE_SIZE = 16
NUM_CLASSES = 3
SPEC = "scale_bias+depthwise+logits"
TASK = "legacy"


def base() -> keras.Model:
  """Conv -> BN -> ReLU -> depthwise -> BN -> ReLU -> pool, NumPy weights."""
  inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
  x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(inputs)
  x = keras.layers.BatchNormalization(name="conv_bn")(x)
  x = keras.layers.ReLU(name="conv_relu")(x)
  x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
  x = keras.layers.BatchNormalization(name="dw_bn")(x)
  x = keras.layers.ReLU(name="dw_relu")(x)
  outputs = keras.layers.GlobalAveragePooling2D(name="pool")(x)
  model = keras.Model(inputs, outputs, name="legacy_base")
  rng = np.random.RandomState(0)
  for variable in model.weights:
    value = rng.uniform(-0.5, 0.5, variable.shape).astype("float32")
    if variable.name == "moving_variance":
      value = np.abs(value) + 0.5
    variable.assign(value)
  return model


def images() -> np.ndarray:
  return np.random.RandomState(1).uniform(
      -1, 1, (4, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")


def make_fixture(directory: str) -> None:
  """Writes `task.k4p1` (a patch whose own values differ from the base's) and
  `expected_logits.npy` (its task model's inference-mode logits)."""
  import os  # pylint: disable=g-import-not-at-top
  from k4p1 import patches  # pylint: disable=g-import-not-at-top
  task = patches.apply_patch(base(), SPEC, task=TASK, num_classes=NUM_CLASSES)
  rng = np.random.RandomState(2)
  for variable in patches.patch_variables(task):
    variable.assign(variable.numpy() + rng.uniform(
        -0.1, 0.1, variable.shape).astype("float32"))
  patches.save_patch(task, os.path.join(directory, "task.k4p1"))
  np.save(os.path.join(directory, "expected_logits.npy"),
          task(images(), training=False).numpy())
