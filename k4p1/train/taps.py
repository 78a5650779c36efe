"""Training TAPS patches: the sparsity penalty, its warm-up, and what is logged.

Each task with a `taps` patch adds `lambda * mean_i |s_i|` over its gated
layers to the loss (Wallingford et al.; the public code divides the sum by the
number of gated layers, as here), once the warm-up is over. The step computes
it once per step and task, with weight decay (`loop.make_train_step`'s
`penalties`), and reports it as `penalty/taps/<task>`.
"""

import math
from typing import Sequence

import tensorflow as tf

from k4p1 import patches
from k4p1.core import defaults

# TAPS's default warm-up (`--warmup_epochs` in MattWallingford/TAPS).
DEFAULT_WARMUP_EPOCHS = defaults.TAPS_WARMUP_EPOCHS


def warmup_steps(warmup_epochs, steps_per_epoch: int, total_steps: int) -> int:
  """Steps before the penalty starts.

  Args:
    warmup_epochs: the configured warm-up; None: TAPS's 2 epochs, capped at a
      tenth of the run, so that a short run still learns which layers to drop
      (a penalty that never starts would keep every layer: a silent full
      residual patch).
    steps_per_epoch: optimizer steps per epoch.
    total_steps: the run's length.
  """
  if warmup_epochs is None:
    return min(math.ceil(DEFAULT_WARMUP_EPOCHS * steps_per_epoch),
               total_steps // 10)
  return math.ceil(warmup_epochs * steps_per_epoch)


def penalties(task_names: Sequence[str], task_models, *, taps_lambda: float,
              warmup: int, step: tf.Variable) -> dict:
  """{task name: {"taps/<task>": penalty fn}} for the tasks that have `taps`.

  Each fn returns `taps_lambda * mean |score|` of its task's gated layers, or
  zero while `step < warmup`; `make_train_step(penalties=...)` takes the
  union of the dicts of the tasks a step trains.
  """
  out = {}
  for name, model in zip(task_names, task_models):
    gated = list(patches.gates.gated_layers(model).values())
    if not gated:
      continue

    def fn(gated=gated):
      started = tf.cast(step >= warmup, tf.float32)
      return taps_lambda * started * patches.taps.score_penalty(gated)
    out[name] = {f"taps/{name}": fn}
  return out


def scalars(task_names: Sequence[str], task_models) -> dict:
  """TensorBoard scalars: each TAPS task's open fraction and every score."""
  out = {}
  for name, model in zip(task_names, task_models):
    summary = patches.taps_summary(model)
    if not summary:
      continue
    out[f"taps/{name}/open_fraction"] = summary["open_fraction"]
    out[f"taps/{name}/open_layers"] = summary["open_layers"]
    for layer, score in summary["scores"].items():
      out[f"taps_scores/{name}/{layer}"] = score
  return out


def result(task_model) -> dict:
  """results.json's `taps` entry of a task: gates and the parameters kept."""
  summary = patches.taps_summary(task_model)
  if not summary:
    return {}
  return {k: v for k, v in summary.items() if k != "scores"} | {
      "scores": {k: round(v, 6) for k, v in summary["scores"].items()}}
