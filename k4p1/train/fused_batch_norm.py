"""Fused BatchNormalization for training and evaluation passes: same results, far fewer ops.

Keras 3's `BatchNormalization` (TensorFlow backend) is not fused: in training
mode it computes `tf.nn.moments` and then `x * inv + (beta - mean * inv)`, and
its gradient runs back through both as some twenty elementwise ops and
reductions (Mul, Sum, Mean, SquaredDifference, Tile, Sub...) over the whole
activation tensor. On a 2-core CPU those ops take more time than the
convolutions of a patch's step (see BUILD_NOTES.md, "Training speed").
`FusedBatchNormV3` does the same computation in one forward and one gradient
op (oneDNN kernels on CPU, cuDNN on GPU).

`fused_view(model)` returns a *view* of a model: a model built with
`keras.models.clone_model` (public API) in which every layer is the model's
own object, except that each BatchNormalization layer is wrapped in a
`FusedBatchNorm` layer that reads and updates that layer's variables (by
identity) with the fused op. The view computes the model's function with the
model's variables; the traced passes (training step, evaluation, PreciseBN,
feature caching) call the view. Nothing about the model or any Keras class
changes: layers, variables, configs, checkpoints and saved files stay as they
are, so a view can be made of any functional or Sequential model, the user's
own included. A model `clone_model` cannot rebuild (a subclassed model) is its
own view: Keras' ops, the same results, slower.

Semantics kept exactly (tests/test_perf_equivalence.py compares to Keras):
- training mode (`training=True` and `layer.trainable`): normalise with the
  batch mean and the *biased* batch variance; update the moving statistics
  with `momentum` from the biased variance (`FusedBatchNormV3` returns the
  Bessel-corrected one: it is scaled back by (n - 1) / n);
- inference mode (`training=False`, a frozen layer, or a
  `FrozenStatsBatchNormalization`): normalise with the moving statistics,
  also with `FusedBatchNormV3` (`is_training=False`): where no gradient flows
  through it (e.g. the frozen backbone of a `logits` patch), grappler fuses
  it with the convolution before it (`_FusedConv2D`);
- inputs of any float dtype are normalised in float32 and cast back to the
  layer's compute dtype, as Keras does.
Layers the fused op cannot express (masks, renorm, synchronized BN, a channel
axis other than the last, epsilon < 1.001e-5, inputs not 4-D) run Keras'
`call`. Subclasses of BatchNormalization with their own `call` (other than
k4p1's `FrozenStatsBatchNormalization`) are left as they are.

The batch moments are computed here once for every user: the training step's
moving-average update and PreciseBN's statistics (`k4p1.train.precise_bn`)
read the same `BatchMoments`.
"""

import dataclasses
from typing import Callable, Optional

import keras
import tensorflow as tf

from k4p1.patches import layers as patch_layers

_MIN_EPSILON = 1.001e-5  # FusedBatchNormV3's smallest.
_KERAS_BN = keras.layers.BatchNormalization


def can_fuse(layer: keras.layers.BatchNormalization, inputs, mask=None) -> bool:
  """Whether the fused op computes exactly what Keras' `call` would."""
  rank = len(inputs.shape)
  axis = layer.axis if isinstance(layer.axis, int) else None
  return (mask is None and rank == 4 and axis in (-1, 3) and
          not layer.renorm and not layer.synchronized and
          layer.epsilon >= _MIN_EPSILON and inputs.shape[-1] is not None)


def has_known_call(layer) -> bool:
  """Whether `layer` is a BN layer computing Keras' BN (or frozen-statistics BN)."""
  return isinstance(layer, _KERAS_BN) and (
      type(layer).call is _KERAS_BN.call or
      isinstance(layer, patch_layers.FrozenStatsBatchNormalization))


def in_training_mode(layer, training) -> bool:
  """Whether `layer` normalises with batch statistics when called so."""
  return bool(training and layer.trainable and not isinstance(
      layer, patch_layers.FrozenStatsBatchNormalization))


@dataclasses.dataclass(frozen=True)
class BatchMoments:
  """A batch's per-channel moments of a BN layer's input (float32 tensors).

  Attributes:
    mean: the batch mean [channels].
    variance: the batch variance [channels]; Bessel-corrected if `unbiased`.
    count: the number of values per channel (int32 scalar).
    unbiased: whether `variance` is the Bessel-corrected one (the fused op's).
  """
  mean: tf.Tensor
  variance: tf.Tensor
  count: tf.Tensor
  unbiased: bool

  def biased_variance(self, dtype=tf.float32) -> tf.Tensor:
    """The biased variance (what Keras and inference normalise with), in `dtype`."""
    variance = tf.cast(self.variance, dtype)
    if not self.unbiased:
      return variance
    count = tf.cast(self.count, dtype)
    return variance * ((count - 1.0) / tf.maximum(count, 1.0))


def _reduction_axes(layer, rank: int) -> list:
  axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
  kept = {a % rank for a in axes}
  return [i for i in range(rank) if i not in kept]


def batch_moments(layer, x: tf.Tensor) -> BatchMoments:
  """The moments of `x` (float32) over every axis but `layer`'s channel axes."""
  axes = _reduction_axes(layer, len(x.shape))
  mean, variance = tf.nn.moments(x, axes=axes)
  count = tf.reduce_prod(tf.gather(tf.shape(x), axes))
  return BatchMoments(mean, variance, count, unbiased=False)


def _affine(layer, channels):
  gamma = (tf.cast(layer.gamma, tf.float32) if layer.scale
           else tf.ones([channels], tf.float32))
  beta = (tf.cast(layer.beta, tf.float32) if layer.center
          else tf.zeros([channels], tf.float32))
  return gamma, beta


def normalize_with_batch(layer, x: tf.Tensor):
  """Training-mode BN of `x` (float32) with its own moments; updates nothing.

  One `FusedBatchNormV3` op where `can_fuse`; otherwise the moments and
  `tf.nn.batch_normalization` (no mask, no renorm).

  Returns:
    (outputs float32, `BatchMoments` of `x`).
  """
  if can_fuse(layer, x):
    gamma, beta = _affine(layer, x.shape[-1])
    outputs, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(
        x, gamma, beta, epsilon=layer.epsilon, data_format="NHWC",
        is_training=True)
    shape = tf.shape(x)
    return outputs, BatchMoments(mean, unbiased, shape[0] * shape[1] * shape[2],
                                 unbiased=True)
  moments = batch_moments(layer, x)
  broadcast = [1] * len(x.shape)
  axes = _reduction_axes(layer, len(x.shape))
  for axis in range(len(x.shape)):
    if axis not in axes:
      broadcast[axis] = x.shape[axis]
  gamma = (tf.reshape(tf.cast(layer.gamma, tf.float32), broadcast)
           if layer.scale else None)
  beta = (tf.reshape(tf.cast(layer.beta, tf.float32), broadcast)
          if layer.center else None)
  outputs = tf.nn.batch_normalization(
      x, tf.reshape(moments.mean, broadcast),
      tf.reshape(moments.variance, broadcast), offset=beta, scale=gamma,
      variance_epsilon=layer.epsilon)
  return outputs, moments


def normalize_with_moving(layer, x: tf.Tensor) -> tf.Tensor:
  """Inference-mode BN of `x` (float32, `can_fuse`) as one fused op."""
  gamma, beta = _affine(layer, x.shape[-1])
  # Unlike Keras' Mul + Add, grappler's remapper can fuse this op into the
  # preceding convolution when no gradient flows through.
  outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
      x, gamma, beta, mean=tf.cast(layer.moving_mean, tf.float32),
      variance=tf.cast(layer.moving_variance, tf.float32),
      epsilon=layer.epsilon, data_format="NHWC", is_training=False)
  return outputs


def update_moving_statistics(layer, moments: BatchMoments) -> None:
  """Keras' moving-average update from a batch's moments (biased variance)."""
  momentum = layer.momentum
  moving_mean = tf.cast(layer.moving_mean, tf.float32)
  moving_variance = tf.cast(layer.moving_variance, tf.float32)
  layer.moving_mean.assign(moving_mean * momentum + moments.mean * (1.0 - momentum))
  layer.moving_variance.assign(
      moving_variance * momentum + moments.biased_variance() * (1.0 - momentum))


class FusedBatchNorm(keras.layers.Layer):
  """A BN layer's computation with fused ops, on that layer's own variables.

  The wrapped layer is held outside Keras' and TensorFlow's tracking (as
  `k4p1.patches.taps.GatedConv` holds its base layer): this layer has no
  weights of its own, and changing its `trainable` never changes the wrapped
  layer's. It reads the wrapped layer's `trainable` at every call.

  Args:
    layer: a built BatchNormalization layer (`has_known_call`).
  """

  def __init__(self, layer, **kwargs):
    kwargs.setdefault("dtype", layer.dtype_policy)
    kwargs.setdefault("name", layer.name)
    super().__init__(**kwargs)
    if not has_known_call(layer):
      raise ValueError(f"FusedBatchNorm wraps BatchNormalization layers, not "
                       f"{type(layer).__name__} {layer.name!r}.")
    object.__setattr__(self, "_layer", layer)
    self.supports_masking = True
    self.built = True

  @property
  def layer(self):
    """The BatchNormalization layer whose variables this layer uses."""
    return self._layer

  def call(self, inputs, training=None, mask=None):
    layer = self._layer
    training = in_training_mode(layer, training)
    if not can_fuse(layer, inputs, mask):
      return layer.call(inputs, training=training, mask=mask)
    x = tf.cast(inputs, tf.float32)  # As Keras: statistics in float32.
    if not training:
      return tf.cast(normalize_with_moving(layer, x), layer.compute_dtype)
    outputs, moments = normalize_with_batch(layer, x)
    update_moving_statistics(layer, moments)
    return tf.cast(outputs, layer.compute_dtype)

  def compute_output_shape(self, input_shape):
    return self._layer.compute_output_shape(input_shape)

  def get_config(self):
    raise NotImplementedError(
        f"{self.name}: a FusedBatchNorm exists only in a model's fused view; "
        "save the model itself.")


def _graph(model: keras.Model) -> Optional[keras.Model]:
  """A new functional model over `model`'s own graph, or None if it has none."""
  if not isinstance(model, keras.Model):
    return None
  try:
    if isinstance(model, keras.Sequential):  # One input and one output.
      inputs, outputs = model.inputs[0], model.outputs[0]
    else:
      inputs, outputs = model.input, model.output
  except (AttributeError, ValueError, TypeError, IndexError):
    return None  # Never built on symbolic inputs (or subclassed).
  graph = keras.Model(inputs, outputs, name=model.name)
  # Only plain functional and Sequential models are their graph; a subclassed
  # model (or a functional one with its own `call`) is one opaque node of it.
  if type(model) not in (type(graph), keras.Sequential) or any(
      layer is model for layer in graph.layers):
    return None
  return graph


def rebuild(model: keras.Model, wrap: Callable) -> Optional[keras.Model]:
  """`model`'s graph with each leaf layer `wrap` maps to a layer replaced by it.

  Args:
    model: a functional or Sequential model (nested ones are rebuilt too).
    wrap: leaf layer -> its replacement, or None to keep the layer itself.

  Returns:
    A new, uncompiled functional model whose other layers are `model`'s own
    objects; None if `model` has no graph to rebuild (a subclassed model). A
    nested model without one is kept as it is.
  """
  graph = _graph(model)
  if graph is None:
    return None

  def clone(layer):
    if isinstance(layer, keras.Model):
      return rebuild(layer, wrap) or layer
    return wrap(layer) or layer

  return keras.models.clone_model(graph, clone_function=clone)


def fused_wrap(layer) -> Optional[keras.layers.Layer]:
  """The `rebuild` wrap of `fused_view`: a `FusedBatchNorm` for BN layers."""
  return FusedBatchNorm(layer) if has_known_call(layer) else None


def fused_view(model: keras.Model) -> keras.Model:
  """`model`'s function, with fused BatchNormalization (see the module doc).

  Build it once and call it inside the traced pass: the view shares every
  variable with `model` (by identity), so training through it trains `model`.

  Returns:
    A new functional model, or `model` itself if it has no graph to rebuild.
  """
  return rebuild(model, fused_wrap) or model
