"""The models of a run: one base, one task model per task (K = 1 for transfer).

Every kind of run builds its task models here from the resolved `RunPlan`:

* transfer: the base at the task's size and `apply_patch`;
* pretrain: the base and a new head, every weight trainable;
* multitask: one base that takes any input size (tasks of different sizes
  share it) and one patch and head per task; `shared="trained"` unfreezes
  the base (`patches.set_shared_trainable`);
* multires: one patch per size (without logits) and one head shared by all;
* sequential: the earlier tasks' patches loaded on the earlier run's base,
  and new patches for the new tasks.

Every variable outside the patches is the base's own object, shared by
identity.
"""

import dataclasses
from typing import Optional

import keras
import numpy as np

from k4p1 import models
from k4p1 import patches
from k4p1.train import loop
from k4p1.train import plan as plan_lib


@dataclasses.dataclass
class RunModels:
  """A run's base, its task models (in task order) and a shared head."""
  base: keras.Model
  task_models: list
  head: Optional[keras.layers.Layer] = None


def build_models(plan: plan_lib.RunPlan) -> RunModels:
  """Builds the run's models; call under the strategy's scope."""
  config = plan.config
  single = plan.experiment in ("transfer", "pretrain")
  base = models.build_backbone(
      config.model, plan.tasks[0].image_size if single else None,
      weights=config.weights, alpha=config.alpha)
  if plan.experiment == "pretrain":
    task = plan.tasks[0]
    head = keras.layers.Dense(task.num_classes, name=f"logits__{task.model_name}")
    return RunModels(base, [keras.Model(base.input, head(base.output),
                                        name=task.model_name)])
  head = None
  if plan.experiment == "multires":
    head = keras.layers.Dense(plan.tasks[0].num_classes, name="logits__shared")
  task_models = []
  for task in plan.tasks:
    if task.patch_file:  # An earlier task of a sequential run.
      task_models.append(patches.load_patch(base, task.patch_file))
      continue
    task_models.append(patches.apply_patch(
        base, plan.spec, task=task.model_name,
        num_classes=None if head is not None else task.num_classes, head=head,
        bn_stats=config.bn_stats, add_missing_scales=config.add_missing_scales,
        taps_threshold=config.taps_threshold))
  if config.shared == "trained":
    patches.set_shared_trainable(task_models, True)
  return RunModels(base, task_models, head)


def _size(variable) -> int:
  return int(np.prod(variable.shape))


def pretrain_params(model: keras.Model) -> dict:
  """count_params-style figures of a model whose every weight trains."""
  total = sum(_size(v) for v in model.weights)
  return {"patch_trainable": sum(_size(v) for v in model.trainable_variables),
          "patch_stored": total, "shared": 0, "total": total}


def system_params(task_models, base) -> dict:
  """The price of the K-task system next to K separate fine-tuned models.

  Returns:
    {"system_params": every distinct variable of the task models (the shared
    base once, plus every task's stored patch), "separate_models_params": K x
    (the whole base + that task's own head), "params": count_params-style
    totals of the system}.
  """
  unique, own = {}, set()
  for model in task_models:
    # Not `model.weights`: a TAPS layer reads its base kernel without owning it.
    for variable in (patches.shared_variables(model) +
                     patches.patch_variables(model)):
      unique[id(variable)] = variable
    own.update(id(v) for v in patches.patch_variables(model))
  system = sum(_size(v) for v in unique.values())
  stored = sum(_size(v) for k, v in unique.items() if k in own)
  trainable = sum(_size(v) for v in loop.unique_trainable_variables(task_models))
  base_total = sum(_size(v) for v in base.weights)
  features = int(base.outputs[0].shape[-1])
  separate = sum(base_total + (features + 1) * patches.patch_info(m).num_classes
                 for m in task_models)
  return {"system_params": system, "separate_models_params": separate,
          "params": {"patch_trainable": trainable, "patch_stored": stored,
                     "shared": system - stored, "total": system}}
