"""Function-preserving initialisation of the BN layers a run trains (`bn_init`).

A patch BN layer that trains in training mode normalises with the task's
statistics, not the base's. With the base's scale and bias copied as they
are ("copy"), the patched network computes a different function at step 0:
on a far task (grey digits through an ImageNet network) channels whose task
variance is a small fraction of the base's are standardised into amplified
noise, and the pretrained features lose much of their content before any
step (a linear probe fell from 0.94 to 0.83 at 64 px).

"preserve" (the default) measures, before the first step, the mean mu_t and
variance var_t of every such layer's input on the task's training data
*through the base* (every layer in inference mode, where the task model still
computes the base's function), then sets, with s = sqrt(var + epsilon):

    gamma_t = gamma_b * s_t / s_b
    beta_t  = beta_b + gamma_b * (mu_t - mu_b) / s_b
    moving statistics = (mu_t, var_t)

so that gamma_t (x - mu_t) / s_t + beta_t = gamma_b (x - mu_b) / s_b + beta_b
for every x: the layer computes the base's function under the task's
statistics, in inference mode exactly (up to float rounding) and in training
mode up to the difference between a batch's statistics and the population's.
Training then starts from the pretrained features, as a logits-only patch
does, and the patch still owns its statistics. PreciseBN still sets the
statistics a run evaluates and saves with.

What each kind of layer gets:
- a layer with scale and center: the exact re-parameterisation above;
- a scale-free layer (`scale=False`, e.g. InceptionV3's, whose gamma is 1):
  only beta can move, so beta_t = beta_b + (mu_t - mu_b) / s_b keeps the
  mean of its output; its spread changes by s_b / s_t ("mean_only");
- a center-free layer: gamma_t keeps the spread, not the mean ("scale_only");
- a layer shared by several task models (a trained shared backbone): one
  re-parameterisation from the statistics of every task's data pooled, so
  the identity holds for the tasks' mixture, not for each task alone.

The statistics pass is PreciseBN's (`precise_bn.PreciseBatchNorm` with
`training=False`): the same sample of the training split, seeded, summed over
replicas and workers in float64, assigned in cross-replica context.
"""

import collections
import time
from typing import Callable, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from k4p1 import patches
from k4p1.core import choices
from k4p1.train import precise_bn

PRESERVE, COPY = choices.BN_INIT  # The --bn_init values.
# Statistics batches when PreciseBN is off (precise_bn_batches=0).
DEFAULT_NUM_BATCHES = precise_bn.DEFAULT_NUM_BATCHES


def reparameterize(layer, mean: np.ndarray, variance: np.ndarray) -> str:
  """Sets `layer` to compute its current function under (mean, variance).

  Args:
    layer: a BatchNormalization layer holding the base's values.
    mean, variance: the statistics of its input on the task's data.

  Returns:
    "exact", "mean_only" (no gamma) or "scale_only" (no beta): what could
    be preserved (see the module docstring).
  """
  eps = float(layer.epsilon)
  mean_b = layer.moving_mean.numpy().astype(np.float64)
  scale_b = np.sqrt(layer.moving_variance.numpy().astype(np.float64) + eps)
  scale_t = np.sqrt(np.asarray(variance, np.float64) + eps)
  gamma_b = (layer.gamma.numpy().astype(np.float64) if layer.scale
             else np.ones_like(mean_b))
  if layer.scale:
    layer.gamma.assign((gamma_b * scale_t / scale_b).astype(layer.gamma.dtype))
  if layer.center:
    beta_b = layer.beta.numpy().astype(np.float64)
    layer.beta.assign((beta_b + gamma_b * (mean - mean_b) / scale_b)
                      .astype(layer.beta.dtype))
  layer.moving_mean.assign(np.asarray(mean).astype(layer.moving_mean.dtype))
  layer.moving_variance.assign(
      np.asarray(variance).astype(layer.moving_variance.dtype))
  if layer.scale and layer.center:
    return "exact"
  return "scale_only" if layer.scale else "mean_only"


def initialize(pairs: Sequence, strategy: Optional[tf.distribute.Strategy] = None,
               num_batches: Optional[int] = DEFAULT_NUM_BATCHES) -> dict:
  """Re-parameterises the training-mode BN layers of the models (see above).

  Call right after injection, before the first training step (a resumed run
  restores the initialised values from its checkpoint instead).

  Args:
    pairs: (task model, dataset) pairs, as `precise_bn.PreciseBatchNorm`
      takes them: batches of the task's training split.
    strategy: the strategy the datasets are distributed with.
    num_batches: at most this many batches of each dataset (None: all).

  Returns:
    The record saved in results.json and patch files: {"method": "preserve",
    "layers", "exact", "mean_only", "scale_only", "shared_layers" (layers in
    more than one model), "batches", "seconds"}; the models' patch info
    gets the same without "seconds".
  """
  began = time.perf_counter()
  models = [model for model, _ in pairs]
  precise = precise_bn.PreciseBatchNorm(pairs, strategy, num_batches,
                                        training=False)
  outcomes, batches = collections.Counter(), 0
  if precise.layers:
    moments, batches = precise.measure()
    outcomes.update(reparameterize(layer, mean, variance)
                    for layer, (mean, variance) in zip(precise.layers, moments))
  uses = collections.Counter(
      id(layer) for model in models
      for layer in precise_bn.training_mode_bn_layers([model]))
  record = {"method": PRESERVE, "layers": len(precise.layers),
            "exact": outcomes["exact"], "mean_only": outcomes["mean_only"],
            "scale_only": outcomes["scale_only"],
            "shared_layers": sum(1 for n in uses.values() if n > 1),
            "batches": batches}
  for model in models:  # Without the time: patch files stay reproducible.
    patches.set_bn_init(model, record)
  return dict(record, seconds=round(time.perf_counter() - began, 3))


def for_run(models: Sequence, *, method: str,
            samples: Callable[[int], list],
            strategy: Optional[tf.distribute.Strategy] = None,
            num_batches: int = 0) -> dict:
  """`bn_init` of a training run's trained task models, logged.

  Args:
    models: the trained task models.
    method: "preserve" or "copy" (nothing to do).
    samples: num_batches -> (model, statistics sample) pairs of the models
      with a training-mode BN layer (`inputs.samples`); called only for
      "preserve".
    strategy: the strategy the samples are distributed with.
    num_batches: statistics batches per task (0: `DEFAULT_NUM_BATCHES`).

  Returns:
    The record (see `initialize`); with "copy", {"method": "copy", "layers":
    the training-mode BN layers left at the base's values}; with no
    training-mode BN layer, {"method": "preserve", "layers": 0}.
  """
  layers = precise_bn.training_mode_bn_layers(models)
  if method == COPY or not layers:
    record = {"method": method, "layers": 0 if method == PRESERVE else len(layers)}
    for model in models:
      patches.set_bn_init(model, record)
    return record
  # The samples are finite (`num_batches` each): no limit in the pass.
  record = initialize(samples(num_batches or DEFAULT_NUM_BATCHES), strategy,
                      num_batches=None)
  logging.info("bn_init=preserve: %d BN layers start as the base's function "
               "under the task's statistics (%d exact, %d mean only, %d scale "
               "only; %d shared by several tasks) from %d batches (%.1f s).",
               record["layers"], record["exact"], record["mean_only"],
               record["scale_only"], record["shared_layers"], record["batches"],
               record["seconds"])
  return record
