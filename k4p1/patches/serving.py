"""One artifact serving K tasks: images plus a task id per example -> that task's logits.

`route_tasks` sends each example through its own task model only (a
`dynamic_partition` by task id, then `dynamic_stitch` back into batch order),
so a mixed-task batch costs one forward pass per example, not K. Shared
variables are stored once in the SavedModel: the task models use the same
variable objects.

Task models may differ in input size and class count: each example is resized
to its task's input size (bilinear; no resize when sizes agree, so outputs are
then exactly the task model's), and logits are right-padded with `PAD_LOGIT`
to the largest class count. `argmax` and `softmax` over a padded row give the
task's own prediction and probabilities.

TAPS gates are baked into the kernels (`gates.bake`); LoRA factors stay
unmerged, so each task adds its factors, not K copies of every kernel.
"""

import keras
import tensorflow as tf

from k4p1 import atomic
from k4p1.patches import gates
from k4p1.patches import info as info_lib

# Finite so that softmax and cross-entropy stay NaN-free; exp(-1e9) is 0.
PAD_LOGIT = -1e9


def _input_size(model):
  """(height, width) of a model's input; None entries for size-agnostic models."""
  shape = model.inputs[0].shape
  return shape[1], shape[2]


def route_tasks(task_models, images, task_ids):
  """Applies each example's own task model (inference mode).

  Args:
    task_models: K task models (from `apply_patch`), indexed by task id.
    images: [B, H, W, 3] preprocessed images.
    task_ids: [B] int32 task ids in [0, K).

  Returns:
    [B, max_classes] logits, padded with `PAD_LOGIT`.
  """
  num_tasks = len(task_models)
  task_ids = tf.cast(task_ids, tf.int32)
  max_classes = max(info_lib.patch_info(m).num_classes for m in task_models)
  positions = tf.dynamic_partition(tf.range(tf.shape(images)[0]), task_ids, num_tasks)
  groups = tf.dynamic_partition(images, task_ids, num_tasks)
  outputs = []
  for model, group in zip(task_models, groups):
    size = _input_size(model)
    if None not in size and tuple(images.shape[1:3]) != size:
      group = tf.image.resize(group, size)
    classes = info_lib.patch_info(model).num_classes
    # A batch may hold no example of a task; Keras convolutions fail on empty
    # batches on CPU, so the model only runs on a non-empty group.
    logits = tf.cond(
        tf.shape(group)[0] > 0,
        lambda m=model, g=group: m(g, training=False),
        lambda: tf.zeros([0, classes], tf.float32))
    outputs.append(tf.pad(logits, [[0, 0], [0, max_classes - classes]],
                          constant_values=PAD_LOGIT))
  return tf.dynamic_stitch(positions, outputs)


def export_multitask(task_models, path: str, image_size=None) -> None:
  """Writes a SavedModel serving every task, with endpoint `serve(images, task_ids)`.

  Also records `task_names` and `num_classes` as constants of the artifact.
  The directory is written beside `path` and renamed into place.

  Args:
    task_models: K task models sharing one base; task id k is `task_models[k]`.
    path: output directory (replaced if it exists).
    image_size: (height, width) served; None: the first task's input size
      (required when that model takes any size).

  Raises:
    ValueError: no task models, or a model not made by `apply_patch`.
  """
  if not task_models:
    raise ValueError("export_multitask needs at least one task model.")
  infos = [info_lib.patch_info(m) for m in task_models]  # Validates each model.
  # Gates into the kernels; LoRA factors stay unmerged (stored per task).
  task_models = [gates.bake(m, merge_lora=False) for m in task_models]
  height, width = image_size or _input_size(task_models[0])
  if height is None or width is None:
    raise ValueError("The task models take any input size: pass image_size=(h, w).")
  archive = keras.export.ExportArchive()
  for model in task_models:
    archive.track(model)
  # LoRA layers read their base layer's kernel outside Keras' tracking.
  for base in {id(info.base): info.base for info in infos}.values():
    archive.track(base)
  archive.add_endpoint(
      name="serve",
      fn=lambda images, task_ids: route_tasks(task_models, images, task_ids),
      input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32),
                       tf.TensorSpec([None], tf.int32)])
  names = tf.constant([info.task for info in infos])
  classes = tf.constant([info.num_classes for info in infos])
  archive.add_endpoint(name="task_names", fn=lambda: names, input_signature=[])
  archive.add_endpoint(name="num_classes", fn=lambda: classes, input_signature=[])

  with atomic.output_dir(path) as staging:
    archive.write_out(staging, verbose=False)
