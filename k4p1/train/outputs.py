"""What a finished run writes: results.json and the artefacts of its kind.

* transfer: `patches/<task>.safetensors`;
* pretrain: `backbone.weights.h5` (every weight trained);
* multitask, multires: `backbone.weights.h5` (the base the patches fit),
  every task's patch, `tasks.json` (the task list in task-id order, which
  sequential runs extend), multires' `patches/shared_head.npz`, and (not
  multires) `export/`, one SavedModel serving every task;
* sequential: the new tasks' patches join the earlier run's `patches/`,
  `tasks.json` lists them after the earlier tasks, `export/` is rewritten;
* with `export_tflite`, transfer runs also write `tflite/<task>.tflite` and
  multitask and sequential runs `tflite/tasks.tflite` (every task, one file).

File places are `k4p1.workdir`'s; every write goes through `k4p1.atomic`.
"""

import hashlib

import numpy as np

from k4p1 import atomic
from k4p1 import patches
from k4p1 import paths
from k4p1 import workdir as workdir_lib
from k4p1.patches import io as patches_io
from k4p1.patches import litert


# Images per task that calibrate int8 activation ranges (--tflite_quantization).
CALIBRATION_IMAGES = 128


def digest(task_models) -> str:
  """sha256 over every variable (shared and own) of the models."""
  hasher = hashlib.sha256()
  for model in task_models:
    for variable in model.weights:
      value = np.ascontiguousarray(variable.numpy())
      hasher.update(f"{variable.path}|{value.shape}|{value.dtype}".encode())
      hasher.update(value.tobytes())
  return hasher.hexdigest()


def write_artefacts(plan, run_models) -> dict:
  """Writes the run's artefacts (chief only); returns results.json's fields."""
  policy, workdir = plan.policy, plan.config.workdir
  base, task_models = run_models.base, run_models.task_models
  if policy.saves == "patch":
    path = workdir_lib.patch_path(workdir, plan.tasks[0].model_name)
    patches.save_patch(task_models[0], path)
    return {"patch_file": paths.relative(path, workdir),
            "patch_file_bytes": paths.size(path),
            **_write_tflite(plan, task_models)}
  if policy.saves == "backbone":
    path = workdir_lib.backbone_path(workdir)
    workdir_lib.save_weights(base, path)
    return {"backbone_weights": paths.absolute(path)}
  if policy.saves_backbone:
    workdir_lib.save_weights(base, workdir_lib.backbone_path(workdir))
  entries = _save_patches(plan, task_models)
  if policy.shared_head:
    head = run_models.head
    atomic.write_bytes_atomic(
        workdir_lib.shared_head_path(workdir),
        patches_io.npz_bytes({"kernel": head.kernel.numpy(),
                              "bias": head.bias.numpy()}))
  if policy.extends_earlier_run:
    entries = list(plan.manifest["tasks"]) + entries
  _write_manifest(plan, entries)
  fields = _write_tflite(plan, task_models)
  if policy.exports_savedmodel:
    export = workdir_lib.export_dir(workdir)
    size = plan.config.export_image_size
    patches.export_multitask(task_models, export, image_size=(size, size))
    fields["export"] = paths.relative(export, plan.run_dir)
  return fields


def _write_tflite(plan, task_models) -> dict:
  """`export_tflite`: the run's LiteRT file; returns results.json's fields."""
  config = plan.config
  if not config.export_tflite or plan.policy.tflite is None:
    return {}
  quantization = config.tflite_quantization
  if plan.policy.tflite == "task":
    task = plan.tasks[0]
    path = workdir_lib.tflite_path(config.workdir, task.model_name)
    calibration = (task.input.calibration_images(CALIBRATION_IMAGES)
                   if quantization == "int8" else None)
    litert.export_task(task_models[0], path, quantization, calibration,
                       task.image_size)
  else:  # Every task in one file, at the SavedModel's size (checks refuse int8).
    path = workdir_lib.tflite_path(config.workdir, workdir_lib.MULTITASK_TFLITE)
    litert.export_multitask(task_models, path, quantization,
                            image_size=config.export_image_size)
  return {"tflite_file": paths.relative(path, plan.run_dir),
          "tflite_file_bytes": paths.size(path),
          "tflite_quantization": quantization}


def _save_patches(plan, task_models) -> list:
  """Saves each trained task's patch; returns the tasks' manifest entries."""
  workdir, entries = plan.config.workdir, []
  for task, model in zip(plan.tasks, task_models):
    if not task.trained:
      continue
    path = workdir_lib.patch_path(workdir, task.model_name)
    patches.save_patch(model, path)
    entries.append({"name": task.name, "model_name": task.model_name,
                    "dataset": task.dataset.name,
                    "num_classes": task.num_classes,
                    "image_size": task.image_size,
                    "patch_file": paths.relative(path, workdir),
                    "added_by": plan.experiment})
  return entries


def _write_manifest(plan, entries) -> None:
  """`tasks.json`: the base, its settings and the tasks in task-id order."""
  config = plan.config
  workdir_lib.write_manifest(config.workdir, {
      "model": config.model, "alpha": config.alpha,
      "add_missing_scales": config.add_missing_scales,
      "backbone": workdir_lib.BACKBONE_FILE,
      "shared_head": (workdir_lib.SHARED_HEAD_FILE
                      if plan.policy.shared_head else None),
      "export_image_size": config.export_image_size,
      "tasks": entries})
