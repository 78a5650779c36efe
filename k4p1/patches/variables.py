"""Queries over a task model's variables: its own (the patch) and the shared ones.

They read the task model's `PatchInfo` (`info.py`); the `named_*` queries key
variables as patch files do, `<base layer>/<variable>`.
"""

import keras

from k4p1.patches import info as info_lib


def set_shared_trainable(task_models, trainable: bool) -> None:
  """Freezes or unfreezes the layers the task models share with their base.

  Unfrozen shared BN layers run in training mode under `training=True` and
  update the shared statistics (multi-task training of the shared backbone).
  """
  for model in task_models:
    for layer in info_lib.patch_info(model).shared_layers:
      layer.trainable = trainable


def patch_variables(task_model: keras.Model) -> list:
  """The task's own variables: patch layers' (incl. BN statistics) and its head's."""
  info = info_lib.patch_info(task_model)
  variables = [v for layer in info.patch_layers.values() for v in layer.weights]
  if info.head_is_patch:
    variables += list(info.head.weights)
  return variables


def shared_variables(task_model: keras.Model) -> list:
  """The base's variables (and a passed-in head's) that the task uses as they are."""
  info = info_lib.patch_info(task_model)
  variables = [v for layer in info.shared_layers for v in layer.weights]
  if not info.head_is_patch:
    variables += list(info.head.weights)
  return variables


def named_patch_variables(task_model: keras.Model) -> dict:
  """Patch variables keyed as in patch files: `<base layer>/<variable>`."""
  info = info_lib.patch_info(task_model)
  named = {}
  for base_name, layer in info.patch_layers.items():
    for variable in layer.weights:
      named[f"{base_name}/{variable.name}"] = variable
  if info.head_is_patch:
    for variable in info.head.weights:
      named[f"{info_lib.HEAD_KEY}/{variable.name}"] = variable
  return named


def named_shared_variables(task_model: keras.Model) -> dict:
  """Shared variables keyed `<base layer>/<variable>` (a shared head: `logits/...`)."""
  info = info_lib.patch_info(task_model)
  named = {}
  for layer in info.shared_layers:
    for variable in layer.weights:
      named[f"{layer.name}/{variable.name}"] = variable
  if not info.head_is_patch:
    for variable in info.head.weights:
      named[f"{info_lib.HEAD_KEY}/{variable.name}"] = variable
  return named
