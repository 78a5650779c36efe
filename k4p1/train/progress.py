"""Training metrics over an interval, and the progress line a person reads."""

import time
from typing import Callable, Sequence

from absl import logging

# A finite loss can still run away (a learning rate too large for the patch:
# LoRA factors behind frozen BN layers at the paper's 0.045, for one), or the
# model can collapse to a constant output. A run whose last summary window's
# cross-entropy is over DIVERGED_FACTOR times its first's, or whose last
# training accuracy is within CHANCE_MARGIN of chance (and at most 1.5x it,
# for tasks of many classes), is flagged: noise
# never triples a training loss, and a patch that trained ends well above
# chance (results/cpu_scale_lora: lora+logits at 0.045 ended either at a
# cross-entropy of 367-784 or stuck at 2.30 = ln 10, at chance accuracy).
DIVERGED_FACTOR = 3.0
CHANCE_MARGIN = 0.05


def training_alarm(first_loss: float | None, metrics: dict,
                   chance: float) -> dict | None:
  """Why a run's last training window looks untrained, or None.

  Args:
    first_loss: the cross-entropy of the process's first summary window.
    metrics: the last window's `MetricAccumulator.result()`.
    chance: the accuracy of guessing (1 / classes of the task with fewest).

  Returns:
    None, or {"reason": "runaway loss" | "chance accuracy", "first_loss",
    "last_loss", "last_accuracy"}.
  """
  last_loss = metrics.get("train/cross_entropy")
  accuracy = metrics.get("train/accuracy")
  if None not in (first_loss, last_loss) and last_loss > DIVERGED_FACTOR * first_loss:
    reason = "runaway loss"
  elif accuracy is not None and accuracy <= chance + min(0.5 * chance, CHANCE_MARGIN):
    reason = "chance accuracy"
  else:
    return None
  return {"reason": reason, "first_loss": first_loss, "last_loss": last_loss,
          "last_accuracy": accuracy}


class MetricAccumulator:
  """Sums step outputs over an interval; reports loss, accuracy, images/sec.

  A step may train a subset of the tasks (sampled multi-task steps): only the
  tasks in its outputs are counted, and `train/loss` is the mean over steps of
  the step's objective (the summed cross-entropies of the tasks it trained,
  plus weight decay).
  """

  def __init__(self, task_names: Sequence[str]):
    self.task_names = tuple(task_names)
    self.reset()

  def reset(self) -> None:
    self.sums = {}
    self.steps = 0
    self.seconds = 0.0
    self.timed_examples = 0.0

  def add(self, outputs: dict, seconds: float, timed: bool = True) -> None:
    """Adds one step's outputs; `timed=False` leaves it out of images/sec."""
    for name, value in outputs.items():
      self.sums[name] = self.sums.get(name, 0.0) + float(value)
    for task in self.task_names:
      if f"{task}/count" in outputs:
        self.sums[f"{task}/steps"] = self.sums.get(f"{task}/steps", 0) + 1
    self.steps += 1
    if timed:
      self.seconds += seconds
      self.timed_examples += sum(float(outputs[f"{t}/count"])
                                 for t in self.task_names
                                 if f"{t}/count" in outputs)

  def result(self) -> dict:
    """{"train/loss", "train/accuracy", "images_per_sec"} (+ per task if K > 1)."""
    if not self.steps:
      return {}
    out, loss, examples, correct = {}, 0.0, 0.0, 0.0
    for task in self.task_names:
      count = self.sums.get(f"{task}/count", 0.0)
      if not count:
        continue  # Not trained in this interval.
      task_loss = self.sums[f"{task}/loss_sum"] / count
      loss += task_loss * self.sums[f"{task}/steps"] / self.steps
      examples += count
      correct += self.sums[f"{task}/correct"]
      if len(self.task_names) > 1:
        out[f"train/{task}/loss"] = task_loss
        out[f"train/{task}/accuracy"] = self.sums[f"{task}/correct"] / count
    out["train/cross_entropy"] = loss
    penalties = {k: v for k, v in self.sums.items() if k.startswith("penalty/")}
    for name, value in penalties.items():  # E.g. TAPS's sparsity term.
      out[f"train/{name}"] = value / self.steps
    out["train/loss"] = (loss + (self.sums["weight_decay"] +
                                 sum(penalties.values())) / self.steps)
    out["train/accuracy"] = correct / examples
    out["images_per_sec"] = (self.timed_examples / self.seconds
                             if self.seconds else 0.0)
    return out


def format_duration(seconds: float) -> str:
  """`"45s"`, `"3m05s"` or `"2h07m"`."""
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressLog:
  """The progress line: step/total, loss, accuracy, images/sec, time left.

  Logged at most every `every_secs` seconds and at the last step. Time left
  extrapolates the wall time per step since the first step (evaluation and
  checkpoints included, tracing excluded).
  """

  def __init__(self, task_names: Sequence[str], total_steps: int,
               every_secs: float, learning_rate_fn: Callable[[int], float]):
    self._metrics = MetricAccumulator(task_names)
    self._total = total_steps
    self._every = every_secs
    self._learning_rate = learning_rate_fn
    self._last = time.monotonic()
    self._origin = None  # (time, step) at the end of the first step.

  def add(self, step: int, outputs: dict, seconds: float, timed: bool) -> None:
    """Adds the outputs of `step` (just completed); logs when it is time."""
    self._metrics.add(outputs, seconds, timed)
    now = time.monotonic()
    if self._origin is None:
      self._origin = (now, step)
    if now - self._last < self._every and step != self._total:
      return
    m = self._metrics.result()
    rate = (f"{m['images_per_sec']:.1f} images/sec" if self._metrics.seconds
            else "images/sec n/a (first step)")
    origin_time, origin_step = self._origin
    left = ""
    if step < self._total and step > origin_step:
      per_step = (now - origin_time) / (step - origin_step)
      left = f", {format_duration(per_step * (self._total - step))} left"
    logging.info("step %d/%d: loss %.4f, accuracy %.4f, %s%s (learning rate "
                 "%.4g)", step, self._total, m["train/loss"], m["train/accuracy"],
                 rate, left, self._learning_rate(step - 1))
    self._metrics.reset()
    self._last = now
