"""The TAPS and LoRA runner tests' shared base (a tiny MobileNetV2 with random weights saved to a file) and checks.

Runs read `weights=<path>` like a user's pretrained file, so the base every
run starts from is the same one the test compares against (`fresh_base`).
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf

from k4p1 import models

ALPHA = 0.35
SIZE = 32


def save_tiny_base(directory: str | os.PathLike[str]) -> str:
  """Saves a seeded MobileNetV2 (alpha 0.35, any input size); returns its path."""
  keras.utils.set_random_seed(0)
  base = models.build_backbone("mobilenet_v2", None, weights=None, alpha=ALPHA)
  path = os.path.join(os.fspath(directory), "base.weights.h5")
  base.save_weights(path)
  return path


def fresh_base(path: str, size: int = SIZE) -> keras.Model:
  """The saved base at `size` px, as a run builds it."""
  return models.build_backbone("mobilenet_v2", size, weights=path, alpha=ALPHA)


def assert_export_kept_earlier_tasks(workdir, images, before, new_task: str) -> None:
  """After a sequential run on a multi-task `workdir` of tasks cifar10 and
  mnist5k_0-4: its SavedModel (which owns its variables) serves them exactly
  as `before` (their logits on `images`, rows by task id), and the manifest
  lists `new_task` after them."""
  served = tf.saved_model.load(str(workdir / "export"))
  after = served.serve(tf.constant(np.concatenate([images, images[:1]])),
                       tf.constant([0, 1, 2], tf.int32)).numpy()
  np.testing.assert_array_equal(after[:2, :before.shape[1]], before)
  manifest = json.loads((workdir / "tasks.json").read_text())
  assert [t["name"] for t in manifest["tasks"]] == ["cifar10", "mnist5k_0-4", new_task]
