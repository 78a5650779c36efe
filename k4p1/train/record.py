"""results.json: one function assembles every field a run records.

The runner gathers the run's facts (the loop's result, the evaluator's
accuracies, the artefacts `outputs` wrote, the parameter counts) and
`results` lays them out, as the run's `RunPolicy` says, in one place.
"""

import dataclasses
from typing import Optional

import k4p1
from k4p1 import patches
from k4p1 import paths
from k4p1.train import performance
from k4p1.train import taps


@dataclasses.dataclass(frozen=True)
class Training:
  """What training did: the loop's figures and the optimizer's state.

  Attributes:
    start_step: the step the run started (or resumed) from.
    end_step: the step it reached.
    optimizer_steps: the optimizer's update count.
    steps_per_epoch: steps per epoch of the schedule.
    images_per_sec: training throughput (None: no step ran).
    train_metrics: the last logged training metrics.
    eval_history: every evaluation's record.
    replicas: replicas in sync.
    task_steps: steps each trained task took, by task name.
    alarm: None, or `progress.training_alarm`'s record of a run whose
      training loss ran away or whose training accuracy ended at chance.
  """
  start_step: int
  end_step: int
  optimizer_steps: int
  steps_per_epoch: int
  images_per_sec: Optional[float]
  train_metrics: dict
  eval_history: list
  replicas: int
  task_steps: dict
  alarm: Optional[dict] = None


def task_entries(plan, task_models, per_task: dict) -> dict:
  """results.json's "tasks": accuracy, data and parameters of every task."""
  tasks = {}
  for task, model in zip(plan.tasks, task_models):
    entry = dict(per_task[task.name], num_classes=task.num_classes,
                 dataset=task.dataset.name, image_size=task.image_size,
                 trained_in_this_run=task.trained)
    if not plan.policy.trains_backbone:
      entry["params"] = patches.count_params(model)
      if plan.spec.is_taps:
        entry["taps"] = taps.result(model)
      if plan.spec.has_lora:
        entry["lora"] = patches.lora_summary(model)
    tasks[task.name] = entry
  return tasks


def results(plan, *, tasks: dict, bn_init: dict, bn_statistics: dict,
            training: Training, params: dict, artefacts: dict, command: str,
            wall_s: float) -> dict:
  """The content of results.json.

  Args:
    plan: the run's `RunPlan`.
    tasks: `task_entries`' dict.
    bn_init: the record of how trained BN layers started (`bn_init`).
    bn_statistics: the evaluator's record of the statistics evaluated with.
    training: what the loop did.
    params: `param_counts.counts`' fields.
    artefacts: the fields `outputs.write_artefacts` returned (empty on a
      worker that is not the chief).
    command: the command line that ran.
    wall_s: seconds since the run began.
  """
  config, policy = plan.config, plan.policy
  sizes = {t.image_size for t in plan.tasks}
  record = {
      "experiment": plan.experiment,
      "model": config.model,
      "image_size": (sizes.pop() if len(sizes) == 1 and
                     policy.records_image_size else None),
      "patch": config.patch,
      "tasks": tasks,
      "bn_init": bn_init,
      "bn_statistics": bn_statistics,
      "task_steps": training.task_steps,
      **params,
      "steps": training.end_step,
      "optimizer_steps": training.optimizer_steps,
      "resumed_from_step": training.start_step,
      "steps_per_epoch": training.steps_per_epoch,
      "train": training.train_metrics,
      "eval_history": training.eval_history,
      "images_per_sec": training.images_per_sec,
      "strategy": {"name": config.strategy, "replicas": training.replicas},
      "k4p1_version": k4p1.__version__,
      "runtime": performance.runtime(),
      "command": command,
      "config": config.to_dict(),
  }
  if policy.extends_earlier_run:
    # The runner raised before this point if an earlier task had changed.
    record["earlier_tasks_unchanged"] = True
    record["base_workdir"] = paths.absolute(config.workdir)
  if training.alarm:
    # The accuracies are of a run that failed to train, not of a trained patch.
    record["training_alarm"] = training.alarm
  record.update(artefacts)
  record["wall_s"] = wall_s
  return record
