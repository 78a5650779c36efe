"""Which tasks a step trains: every task, or one sampled task per step.

`run_training_loop` calls a *step driver*: a callable without arguments that
draws its batches, runs one optimizer step and returns the step's global sums
(`<task>/loss_sum`, `<task>/correct`, `<task>/count` for each task it trained,
and `weight_decay`). Both drivers count each task's steps in `task_steps`, an
int64 variable saved in the run's checkpoint, so a resumed run knows how often
each task was trained.

* `AllTasksStep` ("all", the default): one batch of every task per step, the
  task losses summed (`loop.make_train_step` over K tasks).
* `SampledTaskStep` ("round_robin", "proportional"): one task per step. As in
  tensorflow/models' multitask trainer, the choice is stateless, a function
  of (global step, seed) only (`sample_task`): a resumed run continues the
  same task sequence without saving sampler state.
"""

from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from k4p1.core import choices

SAMPLERS = choices.SAMPLERS


def sample_task(step: int, seed: int, weights: Sequence[float], method: str) -> int:
  """The task (index) that global step `step` trains.

  Args:
    step: the global step (0-based: the number of finished steps).
    seed: the run's seed.
    weights: one non-negative weight per task ("proportional": dataset sizes).
    method: "round_robin" (task `step % K`) or "proportional" (task k with
      probability weights[k] / sum(weights), drawn from a generator seeded by
      (seed, step)).

  Raises:
    ValueError: unknown method, or no positive weight.
  """
  if method == "round_robin":
    return int(step) % len(weights)
  if method == "proportional":
    p = np.asarray(weights, dtype=np.float64)
    if p.ndim != 1 or not len(p) or np.any(p < 0) or not p.sum() > 0:
      raise ValueError(f"Proportional sampling needs non-negative weights with a "
                       f"positive sum, got {list(weights)}.")
    rng = np.random.default_rng([int(seed), int(step)])
    return int(rng.choice(len(p), p=p / p.sum()))
  raise ValueError(f"Unknown task sampler {method!r}; valid choices: "
                   f"{', '.join(SAMPLERS)}.")


def task_step_counter(num_tasks: int) -> tf.Variable:
  """The per-task step counts a driver updates (create under the strategy)."""
  return tf.Variable(tf.zeros([num_tasks], tf.int64), trainable=False,
                     name="task_steps")


class AllTasksStep:
  """Every step trains every task: one batch each, losses summed.

  Args:
    train_step: `loop.make_train_step` over the tasks.
    datasets: one (distributed, infinite) dataset per task, in that order.
    task_steps: from `task_step_counter(len(datasets))`.
  """

  def __init__(self, train_step: Callable, datasets: Sequence, task_steps):
    self._train_step = train_step
    self._iterators = None
    self._datasets = tuple(datasets)
    self._ones = tf.ones([len(self._datasets)], tf.int64)
    self.task_steps = task_steps

  def __call__(self) -> dict:
    if self._iterators is None:  # Created on first use: after a restore.
      self._iterators = tuple(iter(d) for d in self._datasets)
    outputs = self._train_step(self._iterators)
    self.task_steps.assign_add(self._ones)
    return outputs


class SampledTaskStep:
  """Every step trains one task, chosen by `choose(global step)`.

  Args:
    step_fns: one `loop.make_train_step` per task (each over that task alone,
      sharing the optimizer and the step counter).
    datasets: one dataset per task, in the same order.
    choose: global step -> task index (e.g. `sample_task` with fixed args).
    step: the step counter the step functions increment.
    task_steps: from `task_step_counter(len(step_fns))`.
  """

  def __init__(self, step_fns: Sequence[Callable], datasets: Sequence,
               choose: Callable[[int], int], step: tf.Variable, task_steps):
    self._step_fns = tuple(step_fns)
    self._datasets = tuple(datasets)
    self._iterators = None
    self._choose = choose
    self._step = step
    self.task_steps = task_steps

  def __call__(self) -> dict:
    if self._iterators is None:
      self._iterators = tuple(iter(d) for d in self._datasets)
    index = self._choose(int(self._step.numpy()))
    outputs = self._step_fns[index]((self._iterators[index],))
    self.task_steps.assign_add(
        tf.one_hot(index, len(self._step_fns), dtype=tf.int64))
    return outputs
