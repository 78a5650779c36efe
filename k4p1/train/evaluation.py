"""Evaluation during and after a run: BN statistics first, then every task.

`Evaluator(step)` sets the BN statistics the run evaluates and saves with
(PreciseBN over the trained tasks' training data, `inputs.samples`),
computes each task's accuracy on its eval split, logs it and writes it to
TensorBoard. One task: `eval/accuracy`; K tasks: `eval/<task>/accuracy` for
each and their mean as `eval/accuracy`. With `validation_fraction`, the same
on each task's validation split under `eval/validation/...`.
"""

import time
from typing import Callable

from absl import logging
import numpy as np

from k4p1 import eval as eval_lib
from k4p1.train import fused_batch_norm
from k4p1.train import inputs
from k4p1.train import precise_bn


def bn_statistics_updater(plan, task_models, strategy) -> Callable[[], dict]:
  """A function that sets the BN statistics a run evaluates and saves with.

  With `precise_bn_batches` > 0 it runs PreciseBN over the trained tasks'
  training splits (a shared trained layer pools every task's batches) and
  returns its record; otherwise (or with no training-mode BN layer) it changes
  nothing and says where the statistics come from.
  """
  config = plan.config
  trained = [m for t, m in zip(plan.tasks, task_models) if t.trained]
  pairs = (inputs.samples(plan.tasks, task_models, config.precise_bn_batches,
                          strategy) if config.precise_bn_batches else [])
  precise = precise_bn.PreciseBatchNorm(pairs, strategy) if pairs else None
  if precise is None:
    layers = precise_bn.training_mode_bn_layers(trained)
    record = ({"method": "moving_average", "layers": len(layers),
               "momentum": config.bn_momentum} if layers
              else {"method": "none", "layers": 0})
    return lambda: dict(record)

  def refresh() -> dict:
    began = time.perf_counter()
    record = precise.update()
    record["seconds"] = round(time.perf_counter() - began, 3)
    logging.info("PreciseBN: statistics of %d BN layers from %d batches "
                 "(%.1f s).", record["layers"], record["batches"],
                 record["seconds"])
    return record

  return refresh


class Evaluator:
  """Evaluates every task of a run at a step (see the module docstring).

  Args:
    plan: the `RunPlan`.
    task_models: one model per task of the plan.
    strategy: the run's strategy.
    write_scalars: (step, {tag: value}) -> None.
  """

  def __init__(self, plan, task_models, strategy, write_scalars: Callable):
    self._tasks = plan.tasks
    self._write = write_scalars
    self._refresh_bn = bn_statistics_updater(plan, task_models, strategy)

    def accuracy_fn(task, view, split):
      if split is None:
        return None
      return eval_lib.make_accuracy_fn(
          view, task.input.evaluation(split, strategy), strategy)

    # Each model's fused view (fused inference BN: the `inference`
    # benchmark's forward pass), on the model's own variables.
    views = [fused_batch_norm.fused_view(model) for model in task_models]
    self._accuracy_fns = [accuracy_fn(task, view, task.dataset.eval_split)
                          for task, view in zip(plan.tasks, views)]
    # `validation_fraction`: each task's held-out part of its training split.
    self._validation_fns = [
        accuracy_fn(task, view, task.dataset.validation_split)
        for task, view in zip(plan.tasks, views)]
    self.bn_statistics = {}
    self.per_task = {}

  def __call__(self, step: int) -> dict:
    """Sets BN statistics, evaluates, logs and writes; returns the metrics.

    Returns:
      One task: {"eval/accuracy", "examples"}; K tasks: per task
      "eval/<task>/accuracy" and "eval/<task>/examples", and the mean
      "eval/accuracy". `self.per_task` then maps each task name to
      {"accuracy", "examples"}. With validation splits, also
      "eval/validation/accuracy" (one task: and "validation_examples"; K
      tasks: "eval/validation/<task>/accuracy" and ".../examples", the
      accuracy the mean), and each task's `per_task` entry
      "validation_accuracy" and "validation_examples".
    """
    self.bn_statistics = self._refresh_bn()  # Before every eval and write.
    self.per_task = {}
    for task, accuracy_fn, validation_fn in zip(
        self._tasks, self._accuracy_fns, self._validation_fns):
      result = accuracy_fn()
      logging.info("eval at step %d: %s accuracy %.4f on %d examples.", step,
                   task.name, result["accuracy"], result["examples"])
      if validation_fn is not None:
        held = validation_fn()
        result = dict(result, validation_accuracy=held["accuracy"],
                      validation_examples=held["examples"])
        logging.info("eval at step %d: %s validation accuracy %.4f on %d "
                     "examples.", step, task.name, held["accuracy"],
                     held["examples"])
      self.per_task[task.name] = result
    if len(self._tasks) == 1:
      (result,) = self.per_task.values()
      metrics = {"eval/accuracy": result["accuracy"],
                 "examples": result["examples"]}
    else:
      metrics = {}
      for name, result in self.per_task.items():
        metrics[f"eval/{name}/accuracy"] = result["accuracy"]
        metrics[f"eval/{name}/examples"] = result["examples"]
      metrics["eval/accuracy"] = float(np.mean(
          [r["accuracy"] for r in self.per_task.values()]))
    metrics.update(_validation_metrics(self.per_task))
    self._write(step, {k: v for k, v in metrics.items() if k.endswith("accuracy")})
    return metrics


def _validation_metrics(per_task: dict) -> dict:
  """The validation entries of `Evaluator`'s metrics (see its `__call__`)."""
  held = {name: r for name, r in per_task.items() if "validation_accuracy" in r}
  if not held:
    return {}
  if len(per_task) == 1:
    (result,) = held.values()
    return {"eval/validation/accuracy": result["validation_accuracy"],
            "validation_examples": result["validation_examples"]}
  metrics = {}
  for name, result in held.items():
    metrics[f"eval/validation/{name}/accuracy"] = result["validation_accuracy"]
    metrics[f"eval/validation/{name}/examples"] = result["validation_examples"]
  metrics["eval/validation/accuracy"] = float(np.mean(
      [r["validation_accuracy"] for r in held.values()]))
  return metrics
