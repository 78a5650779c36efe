"""Task models as LiteRT (TensorFlow Lite) files: one task, or K tasks in one file.

```python
litert.export_task(task_model, "cifar100.tflite")
litert.export_multitask(task_models, "tasks.tflite", quantization="dynamic_int8")
logits = litert.run("tasks.tflite", images, task="cifar100")
```
One signature, `serve`: `images` [B, H, W, 3] float32 (preprocessed as for
the Keras model) -> `logits` [B, classes]. A K-task file also takes
`task_id`, an int32 scalar (one task per call); its logits are padded with
`PAD_LOGIT` to the largest class count (`run` cuts them back). A JSON record
(`read_metadata`) holds task names (task-id order), classes, size, quantization.

Why a task-id input, not one signature per task: the converter folds each
BN into the convolution before it, so each signature would get its own copy
of every kernel (2 tasks: 2.0x the 1-task file). Here each patched variable
is stacked over the tasks ([K, ...]) and `tf.gather`ed by `task_id`, and the
shared kernels are stored once (`tf.switch_case` does not convert).

Quantization (`QUANTIZATIONS`): "float16" weights; "dynamic_int8": int8
weights; "int8": activations too, calibrated on `representative_images`;
refused for K-task files (benchmarks/litert_size.py: near chance). TAPS
patches are exported baked (`gates.bake`): each open gate's residual is added
into its kernel. LoRA factors are merged into the kernels of a one-task file;
a K-task file stores each task's factors ([K, ..., r], scale folded into B)
and computes W_base + A_k @ B_k for the task asked for."""

import json
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from k4p1 import atomic
from k4p1.core.choices import TFLITE_QUANTIZATIONS as QUANTIZATIONS
from k4p1.patches import gates
from k4p1.patches import info as info_lib
from k4p1.patches import inject
from k4p1.patches import litert_run
from k4p1.patches import lora
from k4p1.patches import serving

SIGNATURE, FORMAT = litert_run.SIGNATURE, "k4p1.litert/1"
METADATA_NAME = litert_run.METADATA_NAME
PAD_LOGIT = serving.PAD_LOGIT
# Reading and running the files (re-exported: `litert.run(...)`).
read_metadata = litert_run.read_metadata
interpreter_class = litert_run.interpreter_class
LiteRTModel = litert_run.LiteRTModel
run = litert_run.run
_CALIBRATION_BATCH = 8


def export_task(task_model, path: str, quantization: str = "none",
                representative_images=None, image_size=None) -> dict:
  """Writes one task model as a `.tflite` file (`serve(images) -> logits`).

  Args:
    task_model: a model from `apply_patch` or `load_patch`.
    path: the `.tflite` file (replaced atomically: temp file, then rename).
    quantization: one of `QUANTIZATIONS`.
    representative_images: "int8" only: [N, H, W, 3] preprocessed images whose
      activations calibrate the int8 ranges (a few hundred are plenty).
    image_size: (height, width) or an int served; None: the model's input
      size. Images are resized (bilinear) to the model's size if it differs.

  Returns:
    The metadata written into the file (`read_metadata`'s record).

  Raises:
    ValueError: bad quantization or images, a model not from `apply_patch`.
  """
  task_model = gates.bake(task_model)  # TAPS gates folded into the kernels.
  info = info_lib.patch_info(task_model)
  size = _served_size([task_model], image_size)
  if representative_images is not None:
    representative_images = [representative_images]
  _check_quantization(quantization, representative_images, 1)
  fn = lambda images: {"logits": tf.cast(task_model(  # pylint: disable=g-long-lambda
      _resized(task_model, images), training=False), tf.float32)}
  return _export(path, fn, [_images_spec(size)], task_model.weights, [info],
                 size, quantization, representative_images)


def export_multitask(task_models, path: str, quantization: str = "none",
                     representative_images=None, image_size=None) -> dict:
  """Writes K task models of one base as ONE `.tflite` file serving every task.

  `serve(images, task_id) -> logits`, task id k is `task_models[k]`. The base's
  variables are stored once; each task adds its stacked patch.

  Args:
    task_models: K task models sharing one base (as a multi-task run's do).
    path, quantization, image_size: as `export_task` (a base that takes any
      input size needs `image_size`).
    representative_images: "int8" only: one array per task, as `export_task`.

  Returns:
    The metadata written into the file.

  Raises:
    ValueError: no task models, models on different bases or not made by
      `apply_patch`, a bad quantization or representative images, "int8"
      for tasks that differ.
  """
  if not task_models:
    raise ValueError("export_multitask needs at least one task model.")
  task_models = [gates.bake(m, merge_lora=False) for m in task_models]
  infos = [info_lib.patch_info(m) for m in task_models]
  bases = {id(info.base) for info in infos}
  if len(bases) != 1:
    raise ValueError(
        f"The task models {[i.task for i in infos]} use {len(bases)} different "
        "base models; one file stacks the patches of tasks that share one base "
        "(build them with apply_patch/load_patch on the same base).")
  size = _served_size(task_models, image_size)
  _check_quantization(quantization, representative_images, len(task_models))
  mapping = _stacked_variables(task_models) + [_stacked_head(task_models)]
  if quantization == "int8" and any(stacked for *_, stacked in mapping):
    raise ValueError(
        "quantization='int8' (full-integer) does not suit a K-task file: its "
        "per-task BN scales and kernels cannot be folded into the shared "
        "int8 kernels (measured: accuracy near chance). Use 'dynamic_int8', "
        "or export_task per task for full-integer files.")
  # Only the base's variables are read; the patches are constants in the fn.
  return _export(path, _multitask_fn(infos[0].base, mapping),
                 [_images_spec(size), tf.TensorSpec([], tf.int32, "task_id")],
                 infos[0].base.weights, infos, size, quantization,
                 representative_images)


def _export(path, fn, input_signature, variables, infos, size, quantization,
            representative_images) -> dict:
  """Converts `fn`, adds the metadata, writes `path` atomically."""
  task_id = len(input_signature) == 2
  calibration = (_calibration_fn(representative_images, size, task_id)
                 if quantization == "int8" else None)
  metadata = {"format": FORMAT, "signature": SIGNATURE, "task_id_input": task_id,
              "tasks": [info.task for info in infos],
              "num_classes": [info.num_classes for info in infos],
              "patches": [str(info.spec) for info in infos],
              "image_size": list(size), "quantization": quantization,
              "pad_logit": PAD_LOGIT}
  blob = _convert(fn, input_signature, variables, quantization, calibration)
  atomic.write_bytes_atomic(path, _with_metadata(blob, metadata))
  return metadata


def _check_quantization(quantization, representative_images, num_tasks) -> None:
  if quantization not in QUANTIZATIONS:
    raise ValueError(f"Unknown quantization {quantization!r}; valid choices: "
                     f"{', '.join(QUANTIZATIONS)}.")
  if quantization == "int8" and (representative_images is None or
                                 len(representative_images) != num_tasks):
    raise ValueError("quantization='int8' calibrates activation ranges: pass "
                     "representative_images (preprocessed [N, H, W, 3] images"
                     f"{f', one array per task ({num_tasks})' if num_tasks > 1 else ''}).")


def _served_size(task_models, image_size) -> tuple:
  image_size = (image_size, image_size) if isinstance(image_size, int) else image_size
  height, width = image_size or task_models[0].inputs[0].shape[1:3]
  if height is None or width is None:
    raise ValueError("The task models take any input size: pass "
                     "image_size=(height, width).")
  return int(height), int(width)


def _images_spec(size) -> tf.TensorSpec:
  return tf.TensorSpec([None, size[0], size[1], 3], tf.float32, "images")


def _resized(model, images):
  """`images` at the model's input size (unchanged for size-agnostic models)."""
  size = tuple(model.inputs[0].shape[1:3])  # (None, None): takes any size.
  if None not in size and tuple(images.shape[1:3]) != size:
    return tf.image.resize(images, size)
  return images


def _task_values(layer, copies) -> dict:
  """{variable name: [K arrays]} of `layer`'s variables as each task has them."""
  names = sorted(v.name for v in layer.weights)
  for copy in copies:
    if sorted(w.name for w in copy.weights) != names:
      raise ValueError(
          f"Layer {copy.name!r} has variables {sorted(w.name for w in copy.weights)}"
          f", base layer {layer.name!r} {names} (add_missing_scales?): they "
          "cannot be stacked into one file; use export_task for each task.")
  return {name: [next(w for w in c.weights if w.name == name).numpy()
                 for c in copies] for name in names}


def _folded_bn(layer, values) -> dict | None:
  """Per-task BN as one affine per channel: 2 stacked vectors instead of 4.

  In inference BN is x * gamma / sqrt(var + eps) + (beta - mean * gamma /
  sqrt(var + eps)). With mean = 0 and var = 1 - eps (shared constants) the
  layer computes x * gamma' + beta', so the tasks' gamma' and beta' carry it.
  None if the layer lacks gamma or beta.
  """
  if not (isinstance(layer, keras.layers.BatchNormalization)
          and layer.scale and layer.center):
    return None
  gamma, beta, mean, var = (np.asarray(values[n], np.float64) for n in
                            ("gamma", "beta", "moving_mean", "moving_variance"))
  scale, dtype = gamma / np.sqrt(var + layer.epsilon), layer.gamma.dtype
  return {"gamma": list(scale.astype(dtype)),
          "beta": list((beta - mean * scale).astype(dtype)),
          "moving_mean": np.zeros(mean.shape[1:], dtype),
          "moving_variance": np.full(var.shape[1:], 1.0 - layer.epsilon, dtype)}


def _stacked_variables(task_models) -> list:
  """(base variable, constant, stacked) for every variable a task patches.

  `stacked` constants are [K, ...], gathered by task id; a variable equal in
  every task is one plain constant (which the converter may fold). The
  kernel of a layer with LoRA residuals gets the tasks' stacked factors, a
  tuple (`lora.stacked_factors`).
  """
  base = info_lib.patch_info(task_models[0]).base
  mapping = []
  for layer in inject.leaf_layers(base):
    copies = [info_lib.patch_info(m).patch_layers.get(layer.name, layer)
              for m in task_models]
    if all(copy is layer for copy in copies):
      continue  # Shared: read from the base's variables, stored once.
    if any(isinstance(copy, lora.LoRALayer) for copy in copies):
      # The kernel is W_base + A_k @ B_k: only the factors are per task.
      mapping.append((layer.kernel, lora.stacked_factors(layer, copies), True))
      continue
    values = _task_values(layer, copies)
    if any(not np.array_equal(v[0], x) for v in values.values() for x in v[1:]):
      values = _folded_bn(layer, values) or values
    for variable in layer.weights:
      value = values[variable.name]  # An array: folded BN's mean or variance.
      mapping.append((variable, *((value, False) if isinstance(value, np.ndarray)
                                  else _constant(value))))
  return mapping


def _constant(per_task) -> tuple:
  """(the value, False) if every task's is equal, else ([K, ...], True)."""
  if all(np.array_equal(per_task[0], v) for v in per_task[1:]):
    return per_task[0], False
  return np.stack(per_task), True


def _stacked_head(task_models) -> tuple:
  """("head", `_constant` of the heads' [kernel; bias], padded to most classes)."""
  heads = [info_lib.patch_info(m).head for m in task_models]
  max_classes = max(int(h.units) for h in heads)
  kernels, biases = [], []
  for head in heads:
    if head.activation is not keras.activations.linear:
      raise ValueError(f"Head {head.name!r} has activation {head.activation}; "
                       "a padded K-task head needs linear heads (logits).")
    kernel = head.kernel.numpy().astype(np.float32)
    bias = (head.bias.numpy().astype(np.float32) if head.use_bias
            else np.zeros(head.units, np.float32))
    pad = max_classes - int(head.units)
    kernels.append(np.pad(kernel, [[0, 0], [0, pad]]))
    biases.append(np.pad(bias, [[0, pad]], constant_values=PAD_LOGIT))
  return ("head", *_constant(np.concatenate(  # A shared head: stored once.
      [np.stack(kernels), np.stack(biases)[:, None]], axis=1)))


def _multitask_fn(base, mapping):
  """`fn(images, task_id) -> {"logits"}`: the base run with the task's patch.

  Inside a `keras.StatelessScope` every patched variable of the base reads
  the gathered task value, so one traced graph serves every task. `mapping`'s
  last entry is the heads' [features + 1, classes] kernel-and-bias.
  """
  def value(variable, constant, stacked, task_id):
    if isinstance(constant, tuple):  # LoRA factors: the task's merged kernel.
      a, b = (tf.gather(tf.constant(c), task_id) for c in constant)
      return lora.merged_kernel(variable.value, a, b)
    return tf.gather(tf.constant(constant), task_id) if stacked else tf.constant(constant)

  def fn(images, task_id):
    # Read before the scope: inside it the variables read their mapped values.
    values = [value(v, c, s, task_id) for v, c, s in mapping]
    with keras.StatelessScope(state_mapping=list(zip(
        [v for v, _, _ in mapping[:-1]], values[:-1]))):
      features = base(_resized(base, images), training=False)
    logits = tf.matmul(tf.cast(features, tf.float32), values[-1][:-1])
    return {"logits": logits + values[-1][-1]}
  return fn


def _calibration_fn(images_per_task, size, task_id: bool):
  """The converter's representative dataset: each task's images in batches."""
  def generate():
    for k, images in enumerate(images_per_task):
      images = np.asarray(images, np.float32)
      if images.ndim != 4 or tuple(images.shape[1:]) != (*size, 3):
        raise ValueError(f"representative_images[{k}] has shape {images.shape}; "
                         f"expected [N, {size[0]}, {size[1]}, 3].")
      for start in range(0, len(images), _CALIBRATION_BATCH):
        sample = {"images": images[start:start + _CALIBRATION_BATCH]}
        if task_id:
          sample["task_id"] = np.array(k, np.int32)
        yield sample
  return generate


def _convert(fn, input_signature, variables, quantization, calibration) -> bytes:
  """Saves `fn` as a SavedModel (temp dir) and converts its signature.

  `variables`: the Keras variables `fn` reads (a SavedModel must track them).
  A plain `tf.Module` saves in a third of `keras.export.ExportArchive`'s time.
  """
  module = tf.Module()
  module.tracked = [v.value for v in variables]
  signature = tf.function(fn, input_signature=input_signature)
  with tempfile.TemporaryDirectory(prefix="k4p1-litert-") as staging:
    tf.saved_model.save(module, staging, signatures={
        SIGNATURE: signature.get_concrete_function()})
    converter = tf.lite.TFLiteConverter.from_saved_model(
        staging, signature_keys=[SIGNATURE])
    if quantization != "none":
      converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
      converter.target_spec.supported_types = [tf.float16]
    converter.representative_dataset = calibration  # None unless "int8".
    with warnings.catch_warnings():  # Calibration uses the deprecated tf.lite one.
      warnings.filterwarnings("ignore", "(?s).*tf.lite.Interpreter is deprecated")
      return converter.convert()


def _with_metadata(blob: bytes, metadata: dict) -> bytes:
  """`blob` with `metadata` as JSON under the flatbuffer's `METADATA_NAME`."""
  model = flatbuffer_utils.convert_bytearray_to_object(blob)
  buffer = schema.BufferT()
  buffer.data = np.frombuffer(json.dumps(metadata).encode(), np.uint8)
  model.buffers.append(buffer)
  entry = schema.MetadataT()
  entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
  model.metadata = list(model.metadata or []) + [entry]
  return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
