"""Fused BatchNormalization for training steps: same results, far fewer ops.

Keras 3's `BatchNormalization` (TensorFlow backend) is not fused: in training
mode it computes `tf.nn.moments` and then `x * inv + (beta - mean * inv)`, and
its gradient runs back through both as some twenty elementwise ops and
reductions (Mul, Sum, Mean, SquaredDifference, Tile, Sub...) over the whole
activation tensor. On a 2-core CPU those ops take more time than the
convolutions of a patch's step (see BUILD_NOTES.md, "Training speed").
`FusedBatchNormV3` does the same computation in one forward and one gradient
op (oneDNN kernels on CPU, cuDNN on GPU).

`fused_batch_norm()` is a context manager that makes every Keras
`BatchNormalization` layer (and subclasses, e.g. the patches'
`FrozenStatsBatchNormalization`) call `fused_call` instead of Keras' `call`
while a training step is traced. Nothing about the layers changes (variables,
configs, saved files); only the ops of the traced step do.

Semantics kept exactly (tests/test_perf_equivalence.py compares to Keras):
- training mode (`training=True` and `layer.trainable`): normalise with the
  batch mean and the *biased* batch variance; update the moving statistics
  with `momentum` from the biased variance (`FusedBatchNormV3` returns the
  Bessel-corrected one: it is scaled back by (n - 1) / n);
- inference mode (`training=False`, or a frozen layer): normalise with the
  moving statistics, also with `FusedBatchNormV3` (`is_training=False`):
  where no gradient flows through it (e.g. the frozen backbone of a `logits`
  patch), grappler fuses it with the convolution before it (`_FusedConv2D`);
- inputs of any float dtype are normalised in float32 and cast back to the
  layer's compute dtype, as Keras does.
Layers the fused op cannot express (masks, renorm, synchronized BN, a channel
axis other than the last, epsilon < 1.001e-5, inputs not 4-D) fall back to
Keras' `call`.
"""

import contextlib
import threading

import keras
import tensorflow as tf

_ORIGINAL_CALL = keras.layers.BatchNormalization.call
_LOCK = threading.RLock()
_MIN_EPSILON = 1.001e-5  # FusedBatchNormV3's smallest.


def can_fuse(layer: keras.layers.BatchNormalization, inputs, mask=None) -> bool:
  """Whether `fused_call` computes exactly what Keras' call would."""
  rank = len(inputs.shape)
  axis = layer.axis if isinstance(layer.axis, int) else None
  return (mask is None and rank == 4 and axis in (-1, 3) and
          not layer.renorm and not layer.synchronized and
          layer.epsilon >= _MIN_EPSILON and inputs.shape[-1] is not None)


def _affine(layer, channels):
  gamma = (tf.cast(layer.gamma, tf.float32) if layer.scale
           else tf.ones([channels], tf.float32))
  beta = (tf.cast(layer.beta, tf.float32) if layer.center
          else tf.zeros([channels], tf.float32))
  return gamma, beta


def fused_call(layer, inputs, training=None, mask=None):
  """`BatchNormalization.call` computed with one `FusedBatchNormV3` op."""
  if not can_fuse(layer, inputs, mask):
    return _ORIGINAL_CALL(layer, inputs, training=training, mask=mask)
  x = tf.cast(inputs, tf.float32)  # As Keras: statistics in float32.
  gamma, beta = _affine(layer, x.shape[-1])
  moving_mean = tf.cast(layer.moving_mean, tf.float32)
  moving_variance = tf.cast(layer.moving_variance, tf.float32)
  if not (training and layer.trainable):
    # Inference mode. Unlike Keras' Mul + Add, grappler's remapper can fuse
    # this op into the preceding convolution when no gradient flows through.
    outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
        x, gamma, beta, mean=moving_mean, variance=moving_variance,
        epsilon=layer.epsilon, data_format="NHWC", is_training=False)
    return tf.cast(outputs, layer.compute_dtype)
  outputs, mean, unbiased_variance = tf.compat.v1.nn.fused_batch_norm(
      x, gamma, beta, epsilon=layer.epsilon, data_format="NHWC",
      is_training=True)
  shape = tf.shape(x)
  count = tf.cast(shape[0] * shape[1] * shape[2], tf.float32)
  # Keras updates the moving variance with the biased batch variance.
  variance = unbiased_variance * ((count - 1.0) / tf.maximum(count, 1.0))
  momentum = layer.momentum
  layer.moving_mean.assign(moving_mean * momentum + mean * (1.0 - momentum))
  layer.moving_variance.assign(
      moving_variance * momentum + variance * (1.0 - momentum))
  return tf.cast(outputs, layer.compute_dtype)


@contextlib.contextmanager
def fused_batch_norm(enabled: bool = True):
  """Within the block, Keras BN layers compute training mode with fused ops.

  Meant around the *tracing* of a `tf.function` training step: the traced
  graph keeps the fused ops after the block ends. Calls from other threads
  while the block is open see the fused call too; the computation is the same.
  """
  if not enabled:
    yield
    return
  with _LOCK:
    previous = keras.layers.BatchNormalization.call
    keras.layers.BatchNormalization.call = fused_call
    try:
      yield
    finally:
      keras.layers.BatchNormalization.call = previous
