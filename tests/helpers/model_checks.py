"""Comparisons of models and their exports that several test files make."""

import keras
import numpy as np


def features_of(model: keras.Model) -> keras.Model:
  """The model up to its last layer's input (the pooled features)."""
  return keras.Model(model.input, model.layers[-1].input)


def assert_close(actual, expected) -> None:
  """Exports and merged kernels sum float32 in other orders: ~1e-5 relative
  over ~50 layers, so the tolerance scales with the logits."""
  scale = max(float(np.abs(expected).max()), 1.0)
  np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * scale)
