r"""Throughput of the k4p1 training input pipeline, in images per second.

Builds `k4p1.data.build_dataset(..., training=True)` for each image size, skips
warm-up batches (tf.data autotuning, first parse of the data), then times a fixed
number of batches. Prints a table and writes JSON (atomically).

  python benchmarks/input_pipeline.py                       # mnist5k, 224 and 96 px
  python benchmarks/input_pipeline.py --dataset=cifar10 --data_dir=~/tfds \
      --image_sizes=224,96 --batch_size=96 --num_batches=200 --output=/tmp/ip.json

With `--train_step_json` (the output of benchmarks/train_step.py), also prints
the pipeline's rate against each regime's training rate at the same size
(issue 8's target: the pipeline at least 3x the training rate).
"""

import json
import os
import platform
import time

from absl import app
from absl import flags
from absl import logging

import bench_util  # First: pools TensorFlow's CPU memory, as the entry points do.  # pylint: disable=unused-import
import tensorflow as tf

import k4p1
from k4p1 import atomic
from k4p1 import data

_DATASET = flags.DEFINE_string("dataset", "mnist5k",
                               "Registry dataset (label subsets allowed).")
_SPLIT = flags.DEFINE_string("split", None, "Split; default: the train split.")
_IMAGE_SIZES = flags.DEFINE_list("image_sizes", ["224", "96"], "Output sizes (px).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Global batch size.")
_NUM_BATCHES = flags.DEFINE_integer("num_batches", 50, "Timed batches per size.")
_WARMUP_BATCHES = flags.DEFINE_integer("warmup_batches", 5,
                                       "Untimed batches before timing.")
_ARCHITECTURE = flags.DEFINE_string("architecture", "mobilenet_v2",
                                    "Selects preprocess_input.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data directory.")
_SEED = flags.DEFINE_integer("seed", 0, "Shuffle / augmentation seed.")
_OUTPUT = flags.DEFINE_string("output", "input_pipeline.json", "JSON result path.")
_TRAIN_STEP_JSON = flags.DEFINE_string(
    "train_step_json", None, "benchmarks/train_step.py output to compare with.")


def compare_with_training(results, train_step_report) -> list:
  """Rows (size, regime, pipeline rate, training rate, ratio) at common sizes."""
  rows = []
  for result in results:
    regimes = train_step_report["results"].get(str(result["image_size"]), {})
    for regime, row in regimes.items():
      if regime in ("inference", "keras_fit"):
        continue
      rows.append({"image_size": result["image_size"], "regime": regime,
                   "pipeline_images_per_sec": result["images_per_sec"],
                   "train_images_per_sec": round(row["images_per_sec"], 1),
                   "ratio": round(result["images_per_sec"] / row["images_per_sec"], 2)})
  return rows


def measure(dataset, split, image_size, batch_size, num_batches, warmup_batches,
            architecture, data_dir, seed):
  """Returns images/sec of the training pipeline at one image size."""
  ds = data.build_dataset(dataset, split, global_batch_size=batch_size,
                          image_size=image_size, training=True, data_dir=data_dir,
                          seed=seed, architecture=architecture)
  iterator = iter(ds)
  for _ in range(warmup_batches):
    next(iterator)
  start = time.perf_counter()
  for _ in range(num_batches):
    images, _ = next(iterator)
  images.numpy()  # Waits for the last batch.
  elapsed = time.perf_counter() - start
  return {"image_size": image_size, "batches": num_batches,
          "images": num_batches * batch_size, "seconds": round(elapsed, 4),
          "images_per_sec": round(num_batches * batch_size / elapsed, 1)}


def main(argv):
  del argv
  info = data.get_dataset_info(_DATASET.value)
  split = _SPLIT.value or info.train_split
  image_sizes = [int(size) for size in _IMAGE_SIZES.value]
  results = []
  for image_size in image_sizes:
    result = measure(_DATASET.value, split, image_size, _BATCH_SIZE.value,
                     _NUM_BATCHES.value, _WARMUP_BATCHES.value,
                     _ARCHITECTURE.value, _DATA_DIR.value, _SEED.value)
    logging.info("%s px: %s images/sec", image_size, result["images_per_sec"])
    results.append(result)
  payload = {
      "benchmark": "input_pipeline",
      "dataset": info.name, "split": split, "batch_size": _BATCH_SIZE.value,
      "architecture": _ARCHITECTURE.value, "warmup_batches": _WARMUP_BATCHES.value,
      "results": results,
      "cpu_count": os.cpu_count(), "platform": platform.platform(),
      "load_average": os.getloadavg(),
      "tensorflow": tf.__version__, "k4p1_version": k4p1.__version__,
  }
  print(f"input pipeline, {info.name} [{split}], batch {_BATCH_SIZE.value}, "
        f"{os.cpu_count()} CPUs")
  print(f"{'image size':>10}  {'images/sec':>10}  {'batches':>7}  {'seconds':>8}")
  for r in results:
    print(f"{r['image_size']:>10}  {r['images_per_sec']:>10}  {r['batches']:>7}  "
          f"{r['seconds']:>8}")
  if _TRAIN_STEP_JSON.value:
    with open(_TRAIN_STEP_JSON.value) as f:
      payload["vs_training"] = compare_with_training(results, json.load(f))
    print("| px | regime | pipeline images/sec | training images/sec | "
          "pipeline / training |")
    print("|---|---|---|---|---|")
    for row in payload["vs_training"]:
      print(f"| {row['image_size']} | {row['regime']} | "
            f"{row['pipeline_images_per_sec']} | {row['train_images_per_sec']} | "
            f"{row['ratio']} |")
  atomic.write_text_atomic(_OUTPUT.value, json.dumps(payload, indent=2))
  print(f"wrote {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
