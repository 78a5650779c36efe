r"""Training-step throughput of each patch regime, as a ratio to full fine-tuning.

For each image size and each regime (`full`, `scale_bias+logits`,
`scale_bias+depthwise+logits`, `logits`), builds MobileNetV2 (random weights),
applies the patch, and times `k4p1.train.make_train_step` (the training loop's
own step: forward, backward to the patch's variables, RMSProp update) on an
in-memory batch, so the input pipeline is not measured. All regimes run in one
process, one after the other, with warm-up steps (tracing) excluded. Prints a
table and writes JSON (atomically).

  python benchmarks/train_step.py                               # 224 and 96 px
  python benchmarks/train_step.py --image_sizes=96 --steps=5 --output=/tmp/ts.json

Fewer trained variables mean a shorter backward pass (no weight gradients for
frozen layers) and a smaller update; training-mode BN (S/B patches) costs
extra batch statistics.
"""

import os
import platform
import time

from absl import app
from absl import flags
from absl import logging
import keras
import numpy as np
import tensorflow as tf

import k4p1
from k4p1 import models
from k4p1 import patches
from k4p1 import train

REGIMES = ("full", "scale_bias+logits", "scale_bias+depthwise+logits", "logits")

_IMAGE_SIZES = flags.DEFINE_list("image_sizes", ["224", "96"], "Input sizes (px).")
_REGIMES = flags.DEFINE_list("regimes", list(REGIMES), "Patch specs to time.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Batch size.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps per regime.")
_WARMUP = flags.DEFINE_integer("warmup_steps", 2, "Untimed steps (tracing).")
_ALPHA = flags.DEFINE_float("alpha", 1.0, "MobileNetV2 width multiplier.")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 100, "Head size.")
_JIT = flags.DEFINE_bool("jit_compile", False, "Compile the step with XLA.")
_OUTPUT = flags.DEFINE_string("output", "train_step.json", "JSON result path.")


def time_regime(spec: str, image_size: int, batch_size: int, steps: int,
                warmup_steps: int, alpha: float, num_classes: int,
                jit_compile: bool = False) -> dict:
  """Images/sec of the training step of one patch regime.

  Returns:
    {"images_per_sec", "seconds_per_step", "patch_trainable", "warmup_s"}.
  """
  keras.utils.set_random_seed(0)
  base = models.build_backbone("mobilenet_v2", image_size, weights=None,
                               alpha=alpha)
  task = patches.apply_patch(base, spec, task="bench", num_classes=num_classes)
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (batch_size, image_size, image_size, 3))
  labels = rng.integers(0, num_classes, batch_size)
  dataset = tf.data.Dataset.from_tensors(
      (images.astype(np.float32), labels.astype(np.int32))).repeat()
  strategy = tf.distribute.get_strategy()
  optimizer = train.build_optimizer("rmsprop", 0.01)
  variables = train.unique_trainable_variables([task])
  optimizer.build(variables)
  step = tf.Variable(0, dtype=tf.int64)
  train_step = train.make_train_step(
      strategy, [train.TrainTask("bench", task, num_classes, dataset, batch_size)],
      optimizer, variables, step, jit_compile=jit_compile)
  iterators = (iter(dataset),)
  began = time.perf_counter()
  for _ in range(warmup_steps):
    train_step(iterators)["bench/count"].numpy()
  warmup = time.perf_counter() - began
  began = time.perf_counter()
  for _ in range(steps):
    outputs = train_step(iterators)
  outputs["bench/count"].numpy()  # Waits for the last step.
  seconds = time.perf_counter() - began
  return {"images_per_sec": batch_size * steps / seconds,
          "seconds_per_step": seconds / steps,
          "patch_trainable": patches.count_params(task)["patch_trainable"],
          "warmup_s": warmup}


def main(argv):
  del argv
  sizes = [int(s) for s in _IMAGE_SIZES.value]
  for spec in _REGIMES.value:
    patches.PatchSpec.parse(spec)  # Fail before timing anything.
  results = {}
  for size in sizes:
    rows = {}
    for spec in _REGIMES.value:
      rows[spec] = time_regime(spec, size, _BATCH_SIZE.value, _STEPS.value,
                               _WARMUP.value, _ALPHA.value, _NUM_CLASSES.value,
                               _JIT.value)
      logging.info("%d px %s: %.1f images/sec", size, spec,
                   rows[spec]["images_per_sec"])
    reference = rows.get("full", {}).get("images_per_sec")
    for row in rows.values():
      row["ratio_to_full"] = (row["images_per_sec"] / reference
                              if reference else None)
    results[str(size)] = rows

  report = {
      "benchmark": "train_step",
      "model": f"mobilenet_v2 alpha {_ALPHA.value}",
      "batch_size": _BATCH_SIZE.value, "steps": _STEPS.value,
      "warmup_steps": _WARMUP.value, "jit_compile": _JIT.value,
      "results": results,
      "machine": {"platform": platform.platform(),
                  "processor": platform.processor(), "cpus": os.cpu_count(),
                  "tensorflow": tf.__version__, "keras": keras.__version__,
                  "k4p1": k4p1.__version__},
  }
  train.write_json_atomic(_OUTPUT.value, report)
  print("| px | regime | trained params | images/sec | ratio to full |")
  print("|---|---|---|---|---|")
  for size, rows in results.items():
    for spec, row in rows.items():
      ratio = row["ratio_to_full"]
      print(f"| {size} | {spec} | {row['patch_trainable']:,} | "
            f"{row['images_per_sec']:.1f} | "
            f"{'n/a' if ratio is None else f'{ratio:.2f}'} |")
  print(f"Wrote {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
