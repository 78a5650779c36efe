r"""What LiteRT (.tflite) files of patched models weigh, and what int8 costs.

Sizes (`--sizes`): MobileNetV2 (`--alpha`, `--image_size`; random weights,
since file sizes do not depend on the values) with each `--specs` patch and a
`--num_classes` head per task. For K in `--num_tasks`: the K-task file
(`k4p1.patches.litert.export_multitask`: one signature with a task_id input,
the base stored once) next to the sum of K one-task files (`export_task`),
for each `--quantizations`, and (float32) one file with one signature per
task, the design k4p1 rejects. Every task's patch is perturbed away from the base
and from the other tasks (equal patches would be stored once). Also the
batch-1 latency of the one-task file and of the largest K-task file
(median over `--latency_runs`, `--threads` threads; 0 runs: skipped).

Accuracy (`--runs`): for each finished transfer or multitask run directory,
its task models are rebuilt from the run's files (base weights + patches) and
evaluated on each task's eval split: Keras float32, and a .tflite of each
quantization ("int8" calibrated on 128 shuffled training images per task, as
runs do; for a multitask run the K-task int8 file that `export_multitask`
refuses is built anyway, to show why it refuses). With `--export_tflite`, the run's own file is evaluated too.

  python benchmarks/litert_size.py --runs=            # sizes only
  python benchmarks/litert_size.py --sizes=false --runs=/tmp/k4p1_litert/dw
"""

import json
import os
import statistics
import tempfile
import time

from absl import app
from absl import flags

import bench_util  # First: pools TensorFlow's CPU memory, as the entry points do.  # pylint: disable=unused-import
import keras
import numpy as np
import tensorflow as tf

from k4p1 import atomic
from k4p1 import data
from k4p1 import models
from k4p1 import patches
from k4p1.patches import litert

_SIZES = flags.DEFINE_bool("sizes", True, "Measure file sizes and latency.")
_SPECS = flags.DEFINE_list("specs", ["scale_bias+logits",
                                     "scale_bias+depthwise+logits"], "Patches.")
_NUM_TASKS = flags.DEFINE_list("num_tasks", ["1", "2", "5"], "Values of K.")
_QUANTIZATIONS = flags.DEFINE_list(
    "quantizations", list(litert.QUANTIZATIONS), "Quantizations measured.")
_ALPHA = flags.DEFINE_float("alpha", 1.0, "MobileNetV2 width multiplier.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Input size (px).")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 10, "Classes of each head.")
_LATENCY_RUNS = flags.DEFINE_integer("latency_runs", 30, "Timed batch-1 calls.")
_THREADS = flags.DEFINE_integer("threads", 2, "Interpreter threads.")
_RUNS = flags.DEFINE_list("runs", [], "Run directories whose int8 cost to measure.")
_OUTPUT = flags.DEFINE_string("output", "litert_size.json", "JSON result path.")
_CALIBRATION_IMAGES = 128


def perturbed_tasks(spec: str, k: int) -> tuple:
  """A random base and k task models whose patches all differ."""
  keras.utils.set_random_seed(0)
  base = models.build_backbone("mobilenet_v2", _IMAGE_SIZE.value, weights=None,
                               alpha=_ALPHA.value)
  rng = np.random.RandomState(0)
  tasks = []
  for i in range(k):
    tasks.append(patches.apply_patch(base, spec, task=f"task{i}",
                                     num_classes=_NUM_CLASSES.value))
    for variable in patches.patch_variables(tasks[-1]):
      value = variable.numpy()
      factor = rng.uniform(0.8, 1.2, value.shape)
      variable.assign((value * factor + rng.normal(0, 0.01, value.shape))
                      .astype(value.dtype) if "variance" not in variable.path
                      else (value * factor).astype(value.dtype))
  return base, tasks


def latency_ms(path: str, task: str) -> float:
  """Median batch-1 latency of `path` for `task`, after 3 warm-up calls."""
  if not _LATENCY_RUNS.value:
    return float("nan")
  served = litert.LiteRTModel(path, num_threads=_THREADS.value)
  size = _IMAGE_SIZE.value
  x = np.random.RandomState(0).uniform(-1, 1, (1, size, size, 3)).astype("float32")
  seconds = []
  for i in range(3 + _LATENCY_RUNS.value):
    began = time.perf_counter()
    served.predict(x, task)
    if i >= 3:
      seconds.append(time.perf_counter() - began)
  return 1000 * statistics.median(seconds)


def signatures_file_bytes(task_models, path: str) -> int:
  """The design k4p1 rejects: one float32 file with one signature per task."""
  size = _IMAGE_SIZE.value
  spec = tf.TensorSpec([None, size, size, 3], tf.float32, "images")
  serve = lambda m: lambda x: {"logits": m(x, training=False)}  # pylint: disable=g-long-lambda
  module = tf.Module()
  module.tracked = [v.value for m in task_models for v in m.weights]
  signatures = {m.name: tf.function(serve(m), input_signature=[spec])
                .get_concrete_function() for m in task_models}
  with tempfile.TemporaryDirectory() as saved:
    tf.saved_model.save(module, saved, signatures=signatures)
    blob = tf.lite.TFLiteConverter.from_saved_model(
        saved, signature_keys=list(signatures)).convert()
  atomic.write_bytes_atomic(path, blob)
  return os.path.getsize(path)


def measure_sizes(spec: str, directory: str) -> list:
  """Rows of one spec: K-task file vs K separate files, per quantization."""
  counts = sorted(int(k) for k in _NUM_TASKS.value)
  base, tasks = perturbed_tasks(spec, counts[-1])
  size = _IMAGE_SIZE.value
  calibration = [np.random.RandomState(i).uniform(-1, 1, (16, size, size, 3))
                 .astype("float32") for i in range(counts[-1])]
  rows = []
  for quantization in _QUANTIZATIONS.value:
    args = dict(quantization=quantization)
    separate = []
    for i, task in enumerate(tasks):
      path = os.path.join(directory, f"{quantization}-task{i}.tflite")
      litert.export_task(task, path, representative_images=(
          calibration[i] if quantization == "int8" else None), **args)
      separate.append(os.path.getsize(path))
    for k in counts:
      path = os.path.join(directory, f"{quantization}-K{k}.tflite")
      if quantization != "int8" or k == 1:  # K-task int8 files are refused.
        litert.export_multitask(tasks[:k], path, representative_images=(
            calibration[:k] if quantization == "int8" else None), **args)
      k_bytes = os.path.getsize(path) if os.path.exists(path) else None
      rows.append({
          "spec": spec, "quantization": quantization, "num_tasks": k,
          "k_task_file_bytes": k_bytes,
          "signatures_file_bytes": (signatures_file_bytes(
              tasks[:k], os.path.join(directory, f"signatures-K{k}.tflite"))
                                    if quantization == "none" else None),
          "separate_files_bytes": sum(separate[:k]),
          "patch_stored_params": patches.count_params(tasks[0])["patch_stored"],
          "base_params": sum(int(np.prod(v.shape)) for v in base.weights),
          "latency_ms_task_file": (latency_ms(os.path.join(
              directory, f"{quantization}-task0.tflite"), "task0")
                                   if k == counts[-1] else None),
          "latency_ms_k_task_file": (latency_ms(path, "task0")
                                     if k == counts[-1] and k_bytes else None)})
      print(f"{spec} {quantization} K={k}: {k_bytes} vs "
            f"{rows[-1]['separate_files_bytes']:,} bytes", flush=True)
  return rows


def load_run(run_dir: str) -> tuple:
  """(task models, their datasets, the served size, run config, results)."""
  with open(os.path.join(run_dir, "config.json")) as f:
    config = json.load(f)["config"]
  with open(os.path.join(run_dir, "results.json")) as f:
    results = json.load(f)
  model, alpha = config["model"], config["alpha"]
  if results["experiment"] == "transfer":
    (name, task), = results["tasks"].items()
    base = models.build_backbone(model, task["image_size"],
                                 weights=config["weights"], alpha=alpha)
    task_models = [patches.load_patch(
        base, os.path.join(run_dir, results["patch_file"]))]
    return task_models, [task["dataset"]], task["image_size"], config, results
  with open(os.path.join(run_dir, "tasks.json")) as f:
    manifest = json.load(f)
  base = models.build_backbone(model, None, alpha=alpha, weights=os.path.join(
      run_dir, manifest["backbone"]))
  task_models = [patches.load_patch(base, os.path.join(run_dir, t["patch_file"]))
                 for t in manifest["tasks"]]
  return (task_models, [t["dataset"] for t in manifest["tasks"]],
          manifest["export_image_size"], config, results)


def forced_int8_multitask(task_models, path, calibration, size) -> None:
  """The K-task int8 file `export_multitask` refuses, to measure why it does.

  Its own steps (private functions) without the refusal.
  """
  infos = [patches.patch_info(m) for m in task_models]
  mapping = (litert._stacked_variables(task_models)  # pylint: disable=protected-access
             + [litert._stacked_head(task_models)])  # pylint: disable=protected-access
  litert._export(  # pylint: disable=protected-access
      path, litert._multitask_fn(infos[0].base, mapping),  # pylint: disable=protected-access
      [litert._images_spec((size, size)),  # pylint: disable=protected-access
       tf.TensorSpec([], tf.int32, "task_id")],
      infos[0].base.weights, infos, (size, size), "int8", calibration)


def split_images(dataset: str, config: dict, size: int, training_split: bool):
  """Batches (images, labels) of the eval split, or calibration images."""
  info = data.get_dataset_info(dataset)
  split = info.train_split if training_split else info.eval_split
  extra = (dict(shuffle=True, max_batches=_CALIBRATION_IMAGES // 32)
           if training_split else {})
  return data.build_dataset(dataset, split, global_batch_size=32,
                            image_size=size, training=False,
                            data_dir=config["data_dir"], seed=config["seed"],
                            architecture=config["model"], **extra)


def measure_accuracy(run_dir: str, directory: str) -> dict:
  """Keras float32 vs each quantization's .tflite on every task's eval split."""
  task_models, datasets, size, config, results = load_run(run_dir)
  calibration = [np.concatenate([x.numpy() for x, _ in
                                 split_images(d, config, size, True)])
                 for d in datasets]
  files = {}
  for quantization in _QUANTIZATIONS.value:
    files[quantization] = os.path.join(directory, f"run-{quantization}.tflite")
    int8 = quantization == "int8"
    if len(task_models) == 1:  # What a transfer run writes: a one-task file.
      litert.export_task(task_models[0], files[quantization], quantization,
                         calibration[0] if int8 else None, size)
    elif int8:
      forced_int8_multitask(task_models, files[quantization], calibration, size)
    else:
      litert.export_multitask(task_models, files[quantization], quantization,
                              calibration if int8 else None, size)
  if results.get("tflite_file"):
    files["run_file"] = os.path.join(run_dir, results["tflite_file"])
  served = {name: litert.LiteRTModel(path, num_threads=_THREADS.value)
            for name, path in files.items()}
  tasks = {}
  for model, dataset in zip(task_models, datasets):
    labels, predicted = [], {name: [] for name in ["keras", *files]}
    for images, batch_labels in split_images(dataset, config, size, False):
      images = images.numpy()
      labels.append(batch_labels.numpy())
      predicted["keras"].append(model(images, training=False).numpy().argmax(1))
      for name, tflite in served.items():
        predicted[name].append(tflite.predict(images, model.name).argmax(1))
    labels = np.concatenate(labels)
    keras_pred = np.concatenate(predicted["keras"])
    tasks[model.name] = {
        "examples": len(labels),
        "run_accuracy": results["tasks"][model.name]["accuracy"],
        "accuracy": {n: float(np.mean(np.concatenate(p) == labels))
                     for n, p in predicted.items()},
        "agreement_with_keras": {n: float(np.mean(np.concatenate(p) == keras_pred))
                                 for n, p in predicted.items() if n != "keras"}}
  return {"run_dir": run_dir, "command": results.get("command"),
          "patch": results["patch"], "tasks": tasks,
          "file_bytes": {n: os.path.getsize(p) for n, p in files.items()}}


def print_sizes(rows) -> None:
  print("| patch | quantization | K | K-task file MB | K separate files MB | "
        "ratio | one signature per task MB | latency ms: 1-task file / "
        "K-task file |")
  print("|---|---|---|---|---|---|---|---|")
  for r in rows:
    latency = "" if r["latency_ms_task_file"] is None else (
        f"{r['latency_ms_task_file']:.1f} / " + (
            f"{r['latency_ms_k_task_file']:.1f}"
            if r["latency_ms_k_task_file"] is not None else "n/a"))
    k_bytes = r["k_task_file_bytes"]
    print(f"| {r['spec']} | {r['quantization']} | {r['num_tasks']} | " +
          (f"{k_bytes / 1e6:.2f}" if k_bytes else "refused") +
          f" | {r['separate_files_bytes'] / 1e6:.2f} | " +
          (f"{k_bytes / r['separate_files_bytes']:.3f}" if k_bytes else "") +
          " | " + (f"{r['signatures_file_bytes'] / 1e6:.2f}"
                   if r["signatures_file_bytes"] else "") + f" | {latency} |")


def print_accuracy(runs) -> None:
  for run in runs:
    print(f"\n{run['run_dir']} ({run['patch']}): {run['command']}")
    names = list(next(iter(run["tasks"].values()))["accuracy"])
    print("| task | examples | run's results.json | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for task, entry in run["tasks"].items():
      cells = []
      for name in names:
        agree = entry["agreement_with_keras"].get(name)
        cells.append(f"{entry['accuracy'][name]:.4f}" +
                     (f" ({agree:.3f})" if agree is not None else ""))
      print(f"| {task} | {entry['examples']} | {entry['run_accuracy']:.4f} | "
            + " | ".join(cells) + " |")
    print("file bytes: " + ", ".join(f"{n} {b:,}" for n, b in run["file_bytes"].items()))


def main(argv):
  del argv
  unknown = sorted(set(_QUANTIZATIONS.value) - set(litert.QUANTIZATIONS))
  if unknown:
    raise app.UsageError(f"Unknown --quantizations {unknown}; valid choices: "
                         f"{', '.join(litert.QUANTIZATIONS)}.")
  began = time.time()
  payload = {"alpha": _ALPHA.value, "image_size": _IMAGE_SIZE.value,
             "num_classes": _NUM_CLASSES.value, "threads": _THREADS.value,
             "cores": os.cpu_count(), "load_average": os.getloadavg(),
             "interpreter": litert.interpreter_class().__module__,
             "sizes": [], "accuracy": []}
  with tempfile.TemporaryDirectory(prefix="litert-bench-") as directory:
    if _SIZES.value:
      for spec in _SPECS.value:
        payload["sizes"] += measure_sizes(spec, directory)
    for run_dir in _RUNS.value:
      payload["accuracy"].append(measure_accuracy(run_dir, directory))
  payload["wall_s"] = time.time() - began
  if payload["sizes"]:
    print_sizes(payload["sizes"])
  print_accuracy(payload["accuracy"])
  atomic.write_text_atomic(_OUTPUT.value, json.dumps(payload, indent=2))


if __name__ == "__main__":
  app.run(main)
