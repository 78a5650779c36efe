"""TAPS: gated per-task kernel residuals (Wallingford et al., CVPR 2022).

The `taps` patch kind replaces every convolution of the base (Conv2D and
DepthwiseConv2D) with a `GatedConv` that computes

    W_task = W_base + I(s >= tau) * delta

with `W_base` the base layer's own kernel variable (shared by identity and
frozen), `delta` the task's residual (zeros at injection, so outputs equal the
base's exactly) and `s` one scalar score per layer and task. The indicator's
gradient is the identity (a straight-through estimator), so the scores learn
from the task loss; `score_penalty` (lambda * mean |s|) pushes them under the
threshold and closes the gates of layers the task does not need. A closed
layer computes exactly the base's convolution: its delta is not stored in the
patch file, and exports (`gates.bake`) use the base layer itself.

Defaults follow the public implementation (MattWallingford/TAPS,
`models/taps_net.py`): scores start at 0.15, the threshold is 0.1
(`k4p1.core.defaults`).
"""

import keras
from keras import ops
import numpy as np
import tensorflow as tf

from k4p1.core import defaults
from k4p1.patches import residual

SCORE_INIT = defaults.TAPS_SCORE_INIT
THRESHOLD = defaults.TAPS_THRESHOLD
GATED_CLASSES = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
DELTA = "delta"
SCORE = "score"


def check_threshold(threshold) -> None:
  """Raises ValueError unless `threshold` is in [0, SCORE_INIT)."""
  if not 0.0 <= threshold < SCORE_INIT:
    raise ValueError(
        f"taps_threshold={threshold!r} is invalid: it must be in [0, "
        f"{SCORE_INIT}), below the scores' initial value, or every gate "
        "starts closed and never opens (a closed residual gets no gradient).")


def straight_through_gate(score, threshold: float):
  """1.0 where `score >= threshold`, else 0.0; its gradient is the identity."""
  hard = tf.cast(score >= threshold, score.dtype)
  return score + tf.stop_gradient(hard - score)


class GatedConv(residual.ResidualLayer):
  """A base convolution plus a gated, per-task kernel residual.

  The base layer is held outside tracking (`residual.ResidualLayer`), so
  `weights` holds exactly the task's patch (`delta`, `score`).

  Args:
    base_layer: a built `Conv2D` or `DepthwiseConv2D` of the base model.
    threshold: the gate opens where the score is >= this.
    score_init: the score's initial value (above the threshold: open).
    **kwargs: `keras.layers.Layer` arguments (e.g. `name`).
  """
  KIND = "TAPS"
  RESIDUALS = (DELTA,)  # Variables a closed gate makes unused.

  def __init__(self, base_layer, threshold: float = THRESHOLD,
               score_init: float = SCORE_INIT, **kwargs):
    super().__init__(base_layer, **kwargs)
    if not isinstance(base_layer, GATED_CLASSES):
      raise ValueError(f"GatedConv wraps Conv2D or DepthwiseConv2D layers, not "
                       f"{type(base_layer).__name__} {base_layer.name!r}.")
    self.threshold = float(threshold)
    self.score_init = float(score_init)
    self.delta = self.add_weight(
        name=DELTA, shape=tuple(base_layer.kernel.shape), initializer="zeros",
        dtype=base_layer.kernel.dtype)
    self.score = self.add_weight(
        name=SCORE, shape=(), initializer=keras.initializers.Constant(score_init),
        dtype="float32")
    self.built = True

  def gate(self):
    """The gate's value (0.0 or 1.0), with the straight-through gradient."""
    return straight_through_gate(self.score, self.threshold)

  def is_open(self) -> bool:
    return bool(self.score.numpy() >= self.threshold)

  def residual_size(self) -> int:
    return int(np.prod(self.delta.shape))

  def task_kernel(self):
    """W_base + gate * delta: the kernel the task uses."""
    gate = ops.cast(self.gate(), self.delta.dtype)
    return self._base.kernel + gate * self.delta

  def call(self, inputs):
    base = self._base
    kernel = ops.cast(self.task_kernel(), self.compute_dtype)
    if isinstance(base, keras.layers.DepthwiseConv2D):
      outputs = ops.depthwise_conv(
          inputs, kernel, strides=base.strides, padding=base.padding,
          dilation_rate=base.dilation_rate, data_format=base.data_format)
    else:
      outputs = base.convolution_op(inputs, kernel)
    return residual.bias_and_activation(base, outputs, self.compute_dtype)


def score_penalty(gated) -> tf.Tensor:
  """mean_i |s_i| over the gated layers `gated` (TAPS's sparsity term)."""
  gated = list(gated)
  return tf.add_n([tf.abs(layer.score) for layer in gated]) / float(len(gated))
