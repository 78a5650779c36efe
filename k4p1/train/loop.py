"""The custom training loop: one `tf.function` step over K tasks, and its driver.

A step takes one batch from every task, sums the task losses and applies one
optimizer update to the union of the tasks' trainable variables (a shared
variable appears once). With K = 1 this is ordinary single-task training; the
multi-task trainer reuses the same step with K task models of one base.

Loss scaling: each replica divides its summed per-example losses by the
*global* batch size of the task, so summing gradients over replicas (what the
optimizer does under a strategy) gives the gradient of the global-batch mean.
Weight decay is divided by the number of replicas for the same reason.

BatchNorm: models are called with `training=True`; a BN layer uses batch
statistics and updates its moving statistics only if it is trainable (Keras 3),
i.e. only the task's patch BN layers. Shared, frozen BN layers run in
inference mode with the base's statistics.
"""

import dataclasses
import functools
import time
from typing import Callable, Optional, Sequence

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from k4p1.core import defaults
from k4p1.train import optimizers as optimizers_lib
from k4p1.train import performance
from k4p1.train import progress as progress_lib
from k4p1.train import task_gradients as task_gradients_lib


@dataclasses.dataclass
class TrainTask:
  """One task of a training step.

  Attributes:
    name: task name (metric tags `.../<name>/...` when K > 1).
    model: maps images to logits.
    num_classes: the model's number of classes.
    train_dataset: an infinite (distributed) dataset of (images, labels).
    global_batch_size: examples per step of this task over all replicas.
  """
  name: str
  model: keras.Model
  num_classes: int
  train_dataset: object
  global_batch_size: int


def cross_entropy(labels, logits, num_classes: int, label_smoothing: float = 0.0):
  """Per-example softmax cross-entropy with label smoothing, float32 [B]."""
  targets = tf.one_hot(tf.cast(labels, tf.int32), num_classes)
  if label_smoothing:
    targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
  return tf.nn.softmax_cross_entropy_with_logits(
      labels=targets, logits=tf.cast(logits, tf.float32))


def unique_trainable_variables(models: Sequence[keras.Model]) -> list:
  """The models' trainable variables, each once (shared ones are one object)."""
  seen, variables = set(), []
  for model in models:
    for variable in model.trainable_variables:
      if id(variable) not in seen:
        seen.add(id(variable))
        variables.append(variable)
  return variables


def make_task_gradients(models: Sequence[keras.Model],
                        optimizer: keras.optimizers.Optimizer,
                        label_smoothing: float = defaults.LABEL_SMOOTHING,
                        fused_batch_norm: bool = True):
  """The `TaskGradients` `make_train_step` uses: cross-entropy, loss scaling."""
  loss_scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
  return task_gradients_lib.TaskGradients(
      models, functools.partial(cross_entropy, label_smoothing=label_smoothing),
      optimizer.scale_loss if loss_scaled else None,
      fused_batch_norm=fused_batch_norm)


def make_train_step(strategy: tf.distribute.Strategy,
                    tasks: Sequence[TrainTask],
                    optimizer: keras.optimizers.Optimizer,
                    variables: Sequence,
                    step: tf.Variable,
                    label_smoothing: float = defaults.LABEL_SMOOTHING,
                    weight_decay: float = defaults.WEIGHT_DECAY,
                    jit_compile=False,
                    fused_batch_norm: bool = True,
                    task_gradients: Optional[
                        task_gradients_lib.TaskGradients] = None,
                    penalties: Optional[dict] = None) -> Callable:
  """Builds the distributed training step.

  Args:
    strategy: the strategy the models and optimizer were built under.
    tasks: the tasks trained together (K >= 1).
    optimizer: applies one update per step.
    variables: what the step trains (`unique_trainable_variables`).
    step: int64 step counter, incremented by every call.
    label_smoothing: label smoothing of the cross-entropy.
    weight_decay: L2 coefficient on the kernels among `variables`.
    jit_compile: compile each replica's step with XLA: True, False or
      "auto" (on with a GPU/TPU, off on CPU).
    fused_batch_norm: compute BatchNormalization with fused ops: the step
      runs the models' fused views (`k4p1.train.fused_batch_norm`; same
      results, much faster on CPU).
    task_gradients: a `TaskGradients` over (at least) the tasks' models,
      built with the same label smoothing, loss scaling and
      `fused_batch_norm`, to share its traced model functions with other
      steps (e.g. one step per task when tasks are sampled); None: a new one.
    penalties: {name: fn() -> scalar tensor} of data-independent loss terms
      on `variables` (e.g. TAPS's sparsity penalty, `k4p1.train.taps`), added
      to the objective like weight decay and returned as `penalty/<name>`.

  Returns:
    `train_step(iterators)`, taking one iterator per task and returning a dict
    of global sums: `<task>/loss_sum` (cross-entropy), `<task>/correct`,
    `<task>/count`, `weight_decay` (the penalty's value) and
    `penalty/<name>` for each of `penalties`.

  Raises:
    ValueError: `task_gradients` was built with another `fused_batch_norm`.
  """
  tasks = tuple(tasks)
  variables = list(variables)
  replicas = strategy.num_replicas_in_sync
  watched = [task_gradients_lib.backing_variable(v) for v in variables]
  loss_scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
  jit_compile = performance.resolve_jit_compile(jit_compile)

  # One traced forward/backward per group of identical task models (K
  # clones of one base share it): graph memory does not grow with K.
  if task_gradients is not None and (task_gradients.fused_batch_norm !=
                                     fused_batch_norm):
    raise ValueError(f"make_train_step(fused_batch_norm={fused_batch_norm}) "
                     "was given a TaskGradients built with fused_batch_norm="
                     f"{task_gradients.fused_batch_norm}.")
  gradients_fn = task_gradients or make_task_gradients(
      [t.model for t in tasks], optimizer, label_smoothing, fused_batch_norm)
  index_of = {id(v): i for i, v in enumerate(variables)}
  task_watched = []
  for task in tasks:
    trained = [v for v in task.model.trainable_variables if id(v) in index_of]
    task_watched.append((trained, [index_of[id(v)] for v in trained]))

  def replica_step(batches):
    stats = {}
    # Weight decay gets its own (cheap) tape: it does not depend on the data.
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(watched)
      penalty = (optimizers_lib.weight_decay_loss(variables, weight_decay)
                 / replicas)
      extra = {f"penalty/{name}": tf.cast(fn(), tf.float32) / replicas
               for name, fn in (penalties or {}).items()}
      objective = tf.add_n([penalty, *extra.values()])
      objective = optimizer.scale_loss(objective) if loss_scaled else objective
    summed = list(tape.gradient(objective, watched))
    stats.update(extra)
    previous = []
    for task, (images, labels), (trained, slots) in zip(tasks, batches,
                                                        task_watched):
      # Task k+1 starts once task k's gradients exist, so only one task's
      # activations are alive at a time (K tasks cost ~1 task's memory).
      with tf.control_dependencies(previous):
        images = tf.identity(images)
      out = gradients_fn(task.model, images, labels, task.num_classes,
                         task.global_batch_size, trained)
      previous = [g for g in out["gradients"] if g is not None]
      for slot, gradient in zip(slots, out["gradients"]):
        if gradient is not None:
          summed[slot] = (gradient if summed[slot] is None
                          else summed[slot] + gradient)
      stats[f"{task.name}/loss_sum"] = out["loss_sum"]
      stats[f"{task.name}/correct"] = out["correct"]
      stats[f"{task.name}/count"] = out["count"]
    optimizer.apply_gradients(
        [(g, v) for g, v in zip(summed, variables) if g is not None])
    stats["weight_decay"] = penalty
    return stats

  if jit_compile:
    replica_step = tf.function(replica_step, jit_compile=True)

  @tf.function
  def train_step(iterators):
    batches = tuple(next(iterator) for iterator in iterators)
    per_replica = strategy.run(replica_step, args=(batches,))
    step.assign_add(1)
    return {name: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
            for name, value in per_replica.items()}

  return train_step


@dataclasses.dataclass
class LoopResult:
  """What the driver reports: steps done, throughput, last metrics.

  `first_loss` is the cross-entropy of this process's first summary window
  (None: no window), for `progress.training_alarm`.
  """
  start_step: int
  end_step: int
  train_seconds: float
  images_per_sec: Optional[float]
  train_metrics: dict
  eval_history: list
  first_loss: Optional[float] = None


def run_training_loop(*,
                      train_step: Callable[[], dict],
                      task_names: Sequence[str],
                      step: tf.Variable,
                      total_steps: int,
                      learning_rate_fn: Callable[[int], float],
                      save_checkpoint: Callable[[], object],
                      checkpoint_every: int,
                      evaluate: Callable[[int], dict],
                      eval_every: int,
                      write_scalars: Callable[[int, dict], None],
                      summary_every: int,
                      log_every_secs: float = 30.0,
                      after_step: Optional[Callable[[], None]] = None
                      ) -> LoopResult:
  """Runs `train_step` from the current `step` to `total_steps`.

  Evaluates every `eval_every` steps (0: never; the caller evaluates at the
  end), checkpoints every `checkpoint_every` steps and at the end, writes
  training scalars every `summary_every` steps, and logs step, loss, accuracy
  and images/sec (and time left) at least every `log_every_secs` seconds.

  Images/sec counts training steps only: the first step of a process (which
  traces and compiles the graph), evaluation and checkpointing are excluded.

  Args:
    train_step: a step driver (`k4p1.train.steps`): runs one step, returns
      its global sums for the tasks it trained.
    task_names: every task the driver may train.
    step: the step counter `train_step` increments.
    total_steps: the step at which training ends.
    learning_rate_fn: step -> learning rate, for summaries.
    save_checkpoint: saves a checkpoint at the current step.
    checkpoint_every: steps between checkpoints (0: only at the end).
    evaluate: step -> {tag: value} of evaluation metrics (also written).
    eval_every: steps between evaluations (0: none during training).
    write_scalars: (step, {tag: value}) -> None.
    summary_every: steps between training summaries.
    log_every_secs: longest time between progress lines in the log.
    after_step: called after every step (e.g. a multi-worker run's
      `PreemptionCheckpointHandler.save_checkpoint_if_preempted`, which saves
      and exits when a worker got SIGTERM).

  Returns:
    A `LoopResult`.
  """
  names = list(task_names)
  start_step = current = int(step.numpy())
  summary_metrics = progress_lib.MetricAccumulator(names)
  progress = progress_lib.ProgressLog(names, total_steps, log_every_secs,
                                      learning_rate_fn)
  timed_seconds, timed_images = 0.0, 0.0
  eval_history = []
  last_metrics, first_loss = {}, None
  last_checkpoint = None
  if current >= total_steps:
    logging.info("Step %d >= train steps %d: nothing to train.", current, total_steps)
  while current < total_steps:
    began = time.perf_counter()
    outputs = {k: v.numpy() for k, v in train_step().items()}
    seconds = time.perf_counter() - began
    current += 1
    if after_step is not None:
      after_step()
    # The first step of a process traces the graph: not part of images/sec.
    timed = current > start_step + 1
    if timed:
      timed_seconds += seconds
      timed_images += sum(float(outputs[f"{n}/count"]) for n in names
                          if f"{n}/count" in outputs)
    else:
      logging.debug("First step (tracing included) took %.1f s.", seconds)
    summary_metrics.add(outputs, seconds, timed)
    losses = [outputs[f"{n}/loss_sum"] for n in names if f"{n}/loss_sum" in outputs]
    if not np.all(np.isfinite(losses)):
      raise FloatingPointError(f"Loss is {losses} at step {current}: lower the "
                               "learning rate.")

    if current % summary_every == 0 or current == total_steps:
      last_metrics = summary_metrics.result()
      if first_loss is None:
        first_loss = last_metrics.get("train/cross_entropy")
      scalars = dict(last_metrics, learning_rate=learning_rate_fn(current - 1))
      if not summary_metrics.seconds:
        scalars.pop("images_per_sec")
      write_scalars(current, scalars)
      summary_metrics.reset()
    progress.add(current, outputs, seconds, timed)
    if eval_every and current % eval_every == 0 and current != total_steps:
      metrics = evaluate(current)
      eval_history.append(dict(metrics, step=current))
    if checkpoint_every and current % checkpoint_every == 0:
      save_checkpoint()
      last_checkpoint = current
  if last_checkpoint != current and current > start_step:
    save_checkpoint()
  return LoopResult(
      start_step=start_step, end_step=current, train_seconds=timed_seconds,
      images_per_sec=timed_images / timed_seconds if timed_seconds else None,
      train_metrics=last_metrics, eval_history=eval_history, first_loss=first_loss)
