"""The runner tests' shared base: a tiny MobileNetV2 with random weights saved to a file.

Runs read `weights=<path>` like a user's pretrained file, so the base every
run starts from is the same one the test compares against (`fresh_base`).
"""

import os

import keras

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
