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

from k4p1 import models
from k4p1 import patches
from k4p1.train import plan as plan_lib


@dataclasses.dataclass
class RunModels:
  """A run's base, its task models (in task order) and a shared head."""
  base: keras.Model
  task_models: list
  head: Optional[keras.layers.Layer] = None


def build_models(plan: plan_lib.RunPlan) -> RunModels:
  """Builds the run's models; call under the strategy's scope."""
  config, policy = plan.config, plan.policy
  base = models.build_backbone(
      config.model, plan.tasks[0].image_size if policy.single_task else None,
      weights=config.weights, alpha=config.alpha)
  if policy.trains_backbone:
    task = plan.tasks[0]
    head = keras.layers.Dense(task.num_classes, name=f"logits__{task.model_name}")
    return RunModels(base, [keras.Model(base.input, head(base.output),
                                        name=task.model_name)])
  head = None
  if policy.shared_head:
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
        taps_threshold=config.taps_threshold, lora_rank=config.lora_rank,
        lora_alpha=config.lora_alpha))
  if config.shared == "trained":
    patches.set_shared_trainable(task_models, True)
  return RunModels(base, task_models, head)
