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
  per model. It runs the model's view (`fused_batch_norm.rebuild`: the
  model's graph rebuilt with `keras.models.clone_model`, every layer the
  model's own object) in which each target layer is wrapped in a layer that
  computes its output with the fused op and also records the sums of its
  input, x and x^2 per channel, and its count (the batch moments the
  training step computes, `fused_batch_norm.BatchMoments`); no moving
  statistic is touched during the pass. The model needs a graph: a
  functional or Sequential model (a subclassed one is refused).
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


class _Recorder(threading.local):
  """The target layers' input sums recorded while one pass call is traced.

  Per thread: MirroredStrategy traces each replica's call in its own thread.
  """

  def start(self, layers) -> None:
    self.sums = {id(layer): [] for layer in layers}

  def add(self, layer, moments: fused_batch_norm.BatchMoments) -> None:
    """Records sum(x), sum(x^2) per channel and the count, in float64."""
    mean = tf.cast(moments.mean, tf.float64)
    count = tf.cast(moments.count, tf.float64)
    self.sums[id(layer)].append(
        (mean * count,
         (moments.biased_variance(tf.float64) + tf.square(mean)) * count, count))

  def totals(self, layers, zeros) -> tuple:
    """`zeros` plus every recorded call's sums, per layer of `layers`."""
    out = []
    for layer, (sx, sxx, n) in zip(layers, zeros):
      for a, b, c in self.sums[id(layer)]:  # Usually one call per layer.
        sx, sxx, n = sx + a, sxx + b, n + c
      out.append((sx, sxx, n))
    return tuple(out)


class _CapturingBatchNorm(fused_batch_norm.FusedBatchNorm):
  """A target layer in PreciseBN's view: its output, and its input's sums.

  In training mode the layer normalises with its batch's statistics (one
  fused op gives the output and the moments, as in the training step) and
  no moving statistic changes; in inference mode (`k4p1.train.bn_init`
  measures through the base) it computes its usual output and the moments
  of its input are recorded all the same.
  """

  def __init__(self, layer, recorder: _Recorder):
    super().__init__(layer)
    object.__setattr__(self, "_recorder", recorder)

  def call(self, inputs, training=None, mask=None):
    layer = self.layer
    x = tf.cast(inputs, tf.float32)  # As Keras: statistics in float32.
    if not fused_batch_norm.in_training_mode(layer, training):
      self._recorder.add(layer, fused_batch_norm.batch_moments(layer, x))
      return super().call(inputs, training=False, mask=mask)
    outputs, moments = fused_batch_norm.normalize_with_batch(layer, x)
    self._recorder.add(layer, moments)
    return tf.cast(outputs, layer.compute_dtype)


def _capture_view(model, targets, recorder: _Recorder):
  """`model` rebuilt with `targets` recording their sums, other BN fused.

  Raises:
    ValueError: a target cannot be measured (a BN subclass with its own
      `call`, or a layer of a model `clone_model` cannot rebuild).
  """
  unknown = [l for l in targets if not fused_batch_norm.has_known_call(l)]
  if unknown:
    raise ValueError(
        f"PreciseBN cannot measure BN layer {unknown[0].name!r}: its class "
        f"{type(unknown[0]).__name__} has its own `call`, so what it "
        "normalises with is not Keras' BatchNormalization's.")
  target_ids, wrapped = {id(l) for l in targets}, set()

  def wrap(layer):
    if id(layer) in target_ids:
      wrapped.add(id(layer))
      return _CapturingBatchNorm(layer, recorder)
    return fused_batch_norm.fused_wrap(layer)

  view = fused_batch_norm.rebuild(model, wrap)
  missed = [l.name for l in targets if id(l) not in wrapped]
  if view is None or missed:
    raise ValueError(
        f"PreciseBN measures a model's BN layers through its graph, rebuilt "
        f"with keras.models.clone_model: model {model.name!r} (or a model "
        f"nested in it) is not a functional or Sequential Keras model, so "
        f"its BN layers {(missed or [l.name for l in targets])[:3]} cannot "
        "be measured. Build it with the functional API.")
  return view


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
    recorder = _Recorder()
    view = _capture_view(model, targets, recorder) if targets else None
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
        recorder.start(targets)
        view(images, training=self.training)
        return recorder.totals(targets, zeros())

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
