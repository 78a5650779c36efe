"""Task samplers: which task a multi-task step trains, as a pure function of the step.

The default schedule ("all") trains every task at every step (one batch each,
summed losses; `loop.make_train_step` with K tasks). The samplers here train
one task per step instead. As in tensorflow/models' multitask trainer, the
choice is stateless: a function of (global step, seed) only, so a resumed run
continues the same task sequence without saving sampler state.

`SampledSchedule` adapts K single-task step functions to
`loop.run_training_loop`, which expects one step function over fixed tasks:
the loop sees a single task named `SAMPLED` (the task trained at that step)
whose "dataset" hands the K iterators to the step; per-task training metrics
are added to the loop's summaries by `wrap_write_scalars`.
"""

from typing import Callable, Sequence

import numpy as np

from k4p1.train import loop

SAMPLERS = ("round_robin", "proportional")
SAMPLED = "sampled"


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


class _IteratorsHolder:
  """What the loop's `iter(dataset)` returns: the K task iterators."""

  def __init__(self, datasets):
    self.iterators = tuple(iter(d) for d in datasets)

  def __next__(self):
    raise TypeError("Sampled schedules draw batches inside their step.")


class _TaskDatasets:
  """A stand-in dataset whose iterator carries every task's iterator."""

  def __init__(self, datasets):
    self.datasets = tuple(datasets)

  def __iter__(self):
    return _IteratorsHolder(self.datasets)


class SampledSchedule:
  """Trains one sampled task per step, behind `run_training_loop`'s interface.

  Args:
    step_fns: one `loop.make_train_step` function per task (each over that
      task alone, all sharing the step counter and the optimizer).
    tasks: the `loop.TrainTask`s, in the same order.
    choose: global step -> task index (e.g. `sample_task` with fixed args).
    step: the step counter the step functions increment.
  """

  def __init__(self, step_fns: Sequence[Callable], tasks: Sequence[loop.TrainTask],
               choose: Callable[[int], int], step):
    self.step_fns = tuple(step_fns)
    self.names = tuple(t.name for t in tasks)
    self.choose = choose
    self.step = step
    self.loop_task = loop.TrainTask(
        name=SAMPLED, model=None, num_classes=0,
        train_dataset=_TaskDatasets(t.train_dataset for t in tasks),
        global_batch_size=max(t.global_batch_size for t in tasks))
    self.steps_per_task = [0] * len(self.names)
    self._sums = {}

  def train_step(self, holders) -> dict:
    (holder,) = holders
    index = self.choose(int(self.step.numpy()))
    outputs = self.step_fns[index]((holder.iterators[index],))
    name = self.names[index]
    self.steps_per_task[index] += 1
    for key in ("loss_sum", "correct", "count"):
      value = float(outputs[f"{name}/{key}"].numpy())
      self._sums[f"{name}/{key}"] = self._sums.get(f"{name}/{key}", 0.0) + value
    renamed = {f"{SAMPLED}/{key}": outputs[f"{name}/{key}"]
               for key in ("loss_sum", "correct", "count")}
    renamed["weight_decay"] = outputs["weight_decay"]
    return renamed

  def wrap_write_scalars(self, write_scalars: Callable) -> Callable:
    """Adds `train/<task>/loss` and `train/<task>/accuracy` of the tasks trained
    since the last write (tasks not sampled in the interval get no point)."""

    def write(step, scalars):
      extra = {}
      for name in self.names:
        count = self._sums.get(f"{name}/count", 0.0)
        if count:
          extra[f"train/{name}/loss"] = self._sums[f"{name}/loss_sum"] / count
          extra[f"train/{name}/accuracy"] = self._sums[f"{name}/correct"] / count
      self._sums = {}
      write_scalars(step, dict(scalars, **extra))

    return write
