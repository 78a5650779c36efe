"""PreciseBN: BatchNorm statistics recomputed as population statistics.

A BN layer that trains in training mode normalises with each batch's
statistics and keeps exponential moving averages for inference. With Keras'
momentum 0.999 those averages still hold 0.999^n of the *base's* statistics
after n steps (74% after 300 steps), so a short fine-tuning run evaluates with
statistics its weights never saw, often at chance. Wu & Johnson, "Rethinking
'Batch' in BatchNorm" (2021), replace the averages by population statistics
computed with the final weights over many training batches; pycls and fvcore
call it PreciseBN (`compute_precise_bn_stats`, `update_bn_stats`).

How it is computed here:
- The layers: every BatchNormalization layer of the given models that runs in
  training mode (`layer.trainable`, not `FrozenStatsBatchNormalization`).
  Every other layer is left alone, bit for bit.
- The pass: each model runs over its batches in training mode, as in a
  training step (each BN layer normalises with its batch's statistics, so the
  layers after it see what they saw in training), inside one `tf.function`
  per model. A target layer's `call` is swapped during tracing for one that
  also returns the sums of its input, x and x^2 per channel, and its count;
  no moving statistic is touched during the pass.
- The statistics: sums over batches, replicas (all-reduced) and, for a layer
  shared by several models, over every model's batches, in float64; then
  mean = sum(x) / n and variance = sum(x^2) / n - mean^2. This is pycls's
  choice: the exact population mean and (biased) variance of the layer's
  inputs, which inference normalises with. fvcore instead averages the
  per-batch variances with equal weights; that drops the spread of batch
  means (a bias of order 1/batch) and weighs a last partial batch like a
  full one. Ours weighs every example equally.
- The assignment happens in cross-replica context, so every replica (and
  every worker) holds the same values.
"""

import contextlib
import threading
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from k4p1 import patches
from k4p1 import tracing
from k4p1.patches import layers as patch_layers
from k4p1.train import fused_batch_norm

DEFAULT_NUM_BATCHES = 200
_CAPTURE = threading.local()


def training_mode_bn_layers(models: Sequence[keras.Model]) -> list:
  """The BN layers of `models` that normalise with batch statistics in training.

  Each layer once, in model order; a layer shared by several models (a
  trained shared backbone) appears once.
  """
  seen, found = set(), []
  for model in models:
    for layer in patches.leaf_layers(model):
      if (isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
          and not isinstance(layer, patch_layers.FrozenStatsBatchNormalization)
          and id(layer) not in seen):
        seen.add(id(layer))
        found.append(layer)
  return found


def _reduction_axes(layer, rank: int) -> list:
  axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
  kept = {a % rank for a in axes}
  return [i for i in range(rank) if i not in kept]


def _capture_call(layer, inputs, training=None, mask=None):
  """BN's output in its mode; records the sums of its input per channel."""
  sink = getattr(_CAPTURE, "sink", None)
  if sink is None or id(layer) not in sink:
    return fused_batch_norm.fused_call(layer, inputs, training=training, mask=mask)
  x = tf.cast(inputs, tf.float32)  # As Keras: statistics in float32.
  if not (training and layer.trainable):
    # Inference mode (`k4p1.train.bn_init` measures through the base): the
    # layer's usual output; its input's sums are recorded all the same.
    # The batch's moments in float32 (as the training-mode path's), summed
    # over batches in float64 below.
    axes = _reduction_axes(layer, len(x.shape))
    mean, variance = tf.nn.moments(x, axes=axes)
    count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), tf.float64)
    mean64 = tf.cast(mean, tf.float64)
    sink[id(layer)].append((mean64 * count, (tf.cast(variance, tf.float64) +
                                             tf.square(mean64)) * count, count))
    return fused_batch_norm.fused_call(layer, inputs, training=False, mask=mask)
  if fused_batch_norm.can_fuse(layer, inputs, mask):
    # One op for the output and the statistics (as the fused training step).
    gamma, beta = fused_batch_norm._affine(layer, x.shape[-1])  # pylint: disable=protected-access
    outputs, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(
        x, gamma, beta, epsilon=layer.epsilon, data_format="NHWC",
        is_training=True)
    shape = tf.shape(x)
    count = tf.cast(shape[0] * shape[1] * shape[2], tf.float64)
    variance = tf.cast(unbiased, tf.float64) * (count - 1.0) / tf.maximum(count, 1.0)
  else:
    axes = _reduction_axes(layer, len(x.shape))
    mean, variance32 = tf.nn.moments(x, axes=axes)
    count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), tf.float64)
    variance = tf.cast(variance32, tf.float64)
    outputs = _normalize(layer, x, axes, mean, variance32)
  mean64 = tf.cast(mean, tf.float64)
  sink[id(layer)].append((mean64 * count, (variance + tf.square(mean64)) * count,
                          count))
  return tf.cast(outputs, layer.compute_dtype)


def _normalize(layer, x, axes, mean, variance):
  """Training-mode BN output for layouts the fused op does not take."""
  broadcast = [1] * len(x.shape)
  for axis in range(len(x.shape)):
    if axis not in axes:
      broadcast[axis] = x.shape[axis]
  gamma = (tf.reshape(tf.cast(layer.gamma, tf.float32), broadcast)
           if layer.scale else None)
  beta = (tf.reshape(tf.cast(layer.beta, tf.float32), broadcast)
          if layer.center else None)
  return tf.nn.batch_normalization(
      x, tf.reshape(mean, broadcast), tf.reshape(variance, broadcast),
      offset=beta, scale=gamma, variance_epsilon=layer.epsilon)


@contextlib.contextmanager
def _capturing(layers):
  """While tracing within the block, `layers` record their input sums."""
  with fused_batch_norm._LOCK:  # pylint: disable=protected-access
    previous_call = keras.layers.BatchNormalization.call
    previous_sink = getattr(_CAPTURE, "sink", None)
    keras.layers.BatchNormalization.call = _capture_call
    _CAPTURE.sink = {id(layer): [] for layer in layers}
    try:
      yield _CAPTURE.sink
    finally:
      _CAPTURE.sink = previous_sink
      keras.layers.BatchNormalization.call = previous_call


class PreciseBatchNorm:
  """Recomputes the statistics of training-mode BN layers from data.

  ```python
  precise = PreciseBatchNorm([(task_model, bn_dataset)], strategy)
  precise.update()   # before every evaluation and before writing the patch
  ```
  The traced pass of each model is built once and reused by every `update`.
  """

  def __init__(self, pairs: Sequence, strategy: Optional[tf.distribute.Strategy] = None,
               num_batches: Optional[int] = None, training: bool = True):
    """Prepares one pass per (model, dataset) pair.

    Args:
      pairs: (model, dataset) pairs: each model runs over its dataset, a
        finite `tf.data.Dataset` (or `DistributedDataset` of `strategy`) of
        `images` or `(images, labels, ...)` batches. A layer in several models
        gets the statistics of all their batches together.
      strategy: the strategy the datasets are distributed with (None: the
        current one).
      num_batches: use at most this many batches of each dataset (None: all).
      training: run the models in training mode (PreciseBN: each layer sees
        what it saw in training) or in inference mode (every layer computes
        with its moving statistics: `k4p1.train.bn_init` measures the
        statistics of the layers' inputs through the base).
    """
    self.training = training
    self.strategy = strategy or tf.distribute.get_strategy()
    self.num_batches = num_batches
    self.models = [model for model, _ in pairs]
    self.layers = training_mode_bn_layers(self.models)
    self._traced = []
    self._passes = [(self._make_pass(model), dataset) for model, dataset in pairs]

  def _make_pass(self, model):
    targets = training_mode_bn_layers([model])
    index = {id(layer): i for i, layer in enumerate(self.layers)}
    strategy, limit = self.strategy, self.num_batches

    def zeros():
      # Tuples, not lists: tf.data's loop state would pack a list into one tensor.
      return tuple((tf.zeros(layer.moving_mean.shape, tf.float64),
                    tf.zeros(layer.moving_mean.shape, tf.float64),
                    tf.zeros([], tf.float64)) for layer in targets)

    def replica_sums(batch):
      images = batch[0] if isinstance(batch, (tuple, list)) else batch

      def run():
        with _capturing(targets) as sink:
          model(images, training=self.training)
        out = []
        for layer, (sx, sxx, n) in zip(targets, zeros()):
          for a, b, c in sink[id(layer)]:  # Usually one call per layer.
            sx, sxx, n = sx + a, sxx + b, n + c
          out.append((sx, sxx, n))
        return tuple(out)

      if strategy.num_replicas_in_sync == 1:
        return run()  # Batches are never empty; a `tf.cond` would cost speed.
      # A last partial batch can leave a replica with no examples; Keras'
      # conv layers fail on empty batches on CPU, so it adds zeros instead.
      return tf.cond(tf.shape(images)[0] > 0, run, zeros)

    def packed_sums(batch):
      # One vector per replica: one all-reduce instead of three per layer
      # (and MultiWorkerMirroredStrategy cannot pack scalars with vectors).
      return tf.concat([tf.zeros([0], tf.float64)] +
                       [tf.reshape(t, [-1])
                        for t in tf.nest.flatten(replica_sums(batch))], 0)

    def add(totals, batch):
      if not targets:  # Nothing to measure (a model without such layers).
        return totals
      per_replica = strategy.run(packed_sums, args=(batch,))
      reduced = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
      flat = tf.nest.flatten(totals)
      parts = tf.split(reduced, [int(np.prod(t.shape)) for t in flat])
      return tf.nest.pack_sequence_as(
          totals, [t + tf.reshape(p, t.shape) for t, p in zip(flat, parts)])

    def run_pass(dataset):
      totals, batches = zeros(), tf.constant(0, tf.int64)
      for batch in dataset:
        totals, batches = add(totals, batch), batches + 1
      return totals, batches

    def run_limited_pass(dataset):
      # A DistributedDataset has no `take`, and its loops cannot `break`.
      totals, batches = zeros(), tf.constant(0, tf.int64)
      iterator = iter(dataset)
      for _ in tf.range(limit):
        optional = iterator.get_next_as_optional()
        totals, batches = tf.cond(
            optional.has_value(),
            lambda: (add(totals, optional.get_value()), batches + 1),  # pylint: disable=cell-var-from-loop
            lambda: (totals, batches))  # pylint: disable=cell-var-from-loop
      return totals, batches

    run_pass = tracing.model_function(run_pass)
    run_limited_pass = tracing.model_function(run_limited_pass)
    self._traced += [run_pass, run_limited_pass]

    def run(dataset):
      if limit is None:
        totals, batches = run_pass(dataset)
      elif isinstance(dataset, tf.data.Dataset):
        totals, batches = run_pass(dataset.take(limit))
      else:
        totals, batches = run_limited_pass(dataset)
      return ([index[id(layer)] for layer in targets],
              [tuple(t.numpy() for t in total) for total in totals],
              int(batches.numpy()))

    return run

  def measure(self) -> tuple:
    """Runs every pass; returns the population statistics, assigning nothing.

    Returns:
      ([(mean, variance)] float64 per layer of `self.layers`, batches used
      (summed over the models)).

    Raises:
      ValueError: a layer saw no example (an empty dataset).
    """
    sums = [None] * len(self.layers)
    batches = 0
    for run, dataset in self._passes:
      indices, totals, used = run(dataset)
      batches += used
      for i, total in zip(indices, totals):
        sums[i] = total if sums[i] is None else tuple(
            a + b for a, b in zip(sums[i], total))
    moments = []
    for layer, total in zip(self.layers, sums):
      if total is None or not total[2]:
        raise ValueError(f"PreciseBN: BN layer {layer.name!r} saw no example: "
                         "its dataset is empty.")
      sx, sxx, n = total
      mean = sx / n
      moments.append((mean, np.maximum(sxx / n - np.square(mean), 0.0)))
    return moments, batches

  def update(self) -> dict:
    """Runs every pass and assigns the population statistics.

    Returns:
      {"method": "precise_bn", "layers": layers updated, "batches": batches
      used (summed over the models)}.

    Raises:
      ValueError: a layer saw no example (an empty dataset).
    """
    moments, batches = self.measure()
    for layer, (mean, variance) in zip(self.layers, moments):
      layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
      layer.moving_variance.assign(variance.astype(layer.moving_variance.dtype))
    record = {"method": "precise_bn", "layers": len(self.layers),
              "batches": batches}
    for model in self.models:
      patches.set_bn_statistics(model, record)
    return record


def update_bn_stats(models, datasets, num_batches: Optional[int] = DEFAULT_NUM_BATCHES,
                    strategy: Optional[tf.distribute.Strategy] = None) -> dict:
  """Replaces the moving statistics of training-mode BN layers (one call).

  Args:
    models: a model or a list of models (e.g. K task models of one base).
    datasets: a dataset or one per model (see `PreciseBatchNorm`).
    num_batches: at most this many batches of each dataset (None: all).
    strategy: the strategy the datasets are distributed with.

  Returns:
    See `PreciseBatchNorm.update`.
  """
  if isinstance(models, keras.Model):
    models, datasets = [models], [datasets]
  return PreciseBatchNorm(list(zip(models, datasets)), strategy,
                          num_batches).update()
