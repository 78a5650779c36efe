"""results.json's parameter counts, by the run's `RunPolicy.param_counts`.

* "patch": one task's patch (`patches.count_params`);
* "model": a model whose every weight trains (a pretrained backbone + head);
* "system": the K-task system (the shared base once, plus every task's stored
  patch) next to K separate fine-tuned models.
"""

import keras
import numpy as np

from k4p1 import patches


def _size(variable) -> int:
  return int(np.prod(variable.shape))


def counts(param_counts: str, task_models, base: keras.Model,
           trained_variables) -> dict:
  """results.json's parameter fields.

  Args:
    param_counts: one of `k4p1.core.run_kinds.PARAM_COUNTS`.
    task_models: the run's task models, in task order.
    base: the shared base.
    trained_variables: what the optimizer updates (a sequential run's earlier
      patches are not among them).

  Returns:
    {"params": count_params-style totals}, plus for "system"
    "system_params" and "separate_models_params".
  """
  if param_counts == "patch":
    return {"params": patches.count_params(task_models[0])}
  trainable = sum(_size(v) for v in trained_variables)
  if param_counts == "model":
    total = sum(_size(v) for v in task_models[0].weights)
    return {"params": {"patch_trainable": trainable, "patch_stored": total,
                       "shared": 0, "total": total}}
  return _system(task_models, base, trainable)


def _system(task_models, base, trainable: int) -> dict:
  """The K-task system's counts next to K separate fine-tuned models (each
  the whole base + that task's own head)."""
  unique, own = {}, set()
  for model in task_models:
    # Not `model.weights`: a TAPS layer reads its base kernel without owning it.
    for variable in (patches.shared_variables(model) +
                     patches.patch_variables(model)):
      unique[id(variable)] = variable
    own.update(id(v) for v in patches.patch_variables(model))
  system = sum(_size(v) for v in unique.values())
  stored = sum(_size(v) for k, v in unique.items() if k in own)
  base_total = sum(_size(v) for v in base.weights)
  features = int(base.outputs[0].shape[-1])
  separate = sum(base_total + (features + 1) * patches.patch_info(m).num_classes
                 for m in task_models)
  return {"system_params": system, "separate_models_params": separate,
          "params": {"patch_trainable": trainable, "patch_stored": stored,
                     "shared": system - stored, "total": system}}
