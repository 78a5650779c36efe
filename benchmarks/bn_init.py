r"""What `bn_init=preserve` costs a run: its statistics pass next to training.

For each image size, MobileNetV2 1.0 (random weights; speed does not depend
on them) with a `scale_bias+logits` patch, in-memory batches (the input
pipeline is not measured):
  bn_init      `k4p1.train.bn_init.initialize`'s pass: the task model in
               inference mode over `--batches` batches, each patched BN
               layer's input summed in float64; timed after a first, traced
               call (`first_call_s`: what a run pays once for tracing);
  train_step   `k4p1.train.make_train_step` of the same patch.
It then prices a run's initialisation, `--run_batches` batches (the default
200, or the whole training split if smaller: `mnist5k`'s 3,200 training
images are 50 batches of 64) plus the first call's tracing, in seconds and as
a fraction of a `--run_steps`-step run.

  python benchmarks/bn_init.py                        # 32 and 224 px
  python benchmarks/bn_init.py --image_sizes=224 --output=/tmp/bn_init.json
"""

import json
import os
import statistics
import time

from absl import app
from absl import flags
import numpy as np

import bench_util
from k4p1 import atomic  # Standard library only: the parent stays TF-free.

_IMAGE_SIZES = flags.DEFINE_list("image_sizes", ["32", "224"], "Input sizes (px).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Batch size.")
_BATCHES = flags.DEFINE_integer("batches", 8, "Batches per timed pass.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Timed passes per regime (median).")
_RUN_BATCHES = flags.DEFINE_list(
    "run_batches", ["50", "200"], "Statistics batches of the runs priced "
    "(50: mnist5k's training split at batch 64; 200: the default cap).")
_RUN_STEPS = flags.DEFINE_integer("run_steps", 300, "Training steps of the runs priced.")
_OUTPUT = flags.DEFINE_string("output", "bn_init.json", "JSON result path.")


def measure(size: int) -> dict:
  """Seconds per batch of the two regimes at `size` px, and the first call."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from k4p1 import models, patches, train  # pylint: disable=g-import-not-at-top
  from k4p1.train import bn_init, precise_bn  # pylint: disable=g-import-not-at-top

  batch, batches = _BATCH_SIZE.value, _BATCHES.value
  keras.utils.set_random_seed(0)
  base = models.build_backbone("mobilenet_v2", size, weights=None)
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (batch * batches, size, size, 3)).astype("float32")
  labels = rng.integers(0, 100, batch * batches).astype("int32")
  dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch).cache()

  model = patches.apply_patch(base, "scale_bias+logits", task="t", num_classes=100)
  began = time.perf_counter()
  bn_init.initialize([(model, dataset)], num_batches=None)  # Traces once.
  first_call = time.perf_counter() - began
  # The steady pass: the same traced function, measuring only.
  measurer = precise_bn.PreciseBatchNorm([(model, dataset)], training=False)
  measurer.measure()

  variables = train.unique_trainable_variables([model])
  optimizer = train.build_optimizer("rmsprop", 0.01, momentum=0.9, rho=0.9,
                                    epsilon=1.0)
  optimizer.build(variables)
  task = train.TrainTask("t", model, 100, dataset.repeat(), batch)
  train_step = train.make_train_step(tf.distribute.get_strategy(), [task],
                                     optimizer, variables,
                                     tf.Variable(0, dtype=tf.int64))
  iterator = iter(dataset.repeat())
  train_step((iterator,))  # Trace.

  def per_batch(fn):
    seconds = []
    for _ in range(_ROUNDS.value):
      began = time.perf_counter()
      fn()
      seconds.append(time.perf_counter() - began)
    return statistics.median(seconds) / batches

  bn_batch = per_batch(measurer.measure)
  step = per_batch(lambda: [train_step((iterator,))["t/count"].numpy()
                            for _ in range(batches)])
  # The first call = tracing + one pass over `batches` batches.
  tracing = max(first_call - bn_batch * batches, 0.0)
  runs = {}
  for n in (int(b) for b in _RUN_BATCHES.value):
    cost = tracing + n * bn_batch
    runs[n] = {"seconds": cost,
               "fraction_of_run": cost / (cost + _RUN_STEPS.value * step)}
  return {"image_size": size, "batch_size": batch,
          "bn_init_s_per_batch": bn_batch, "train_step_s": step,
          "first_call_s": first_call, "tracing_s": tracing,
          "run_steps": _RUN_STEPS.value, "runs": runs}


def main(argv):
  del argv
  results = [measure(int(s)) for s in _IMAGE_SIZES.value]
  cpu = bench_util.cpu_description()
  print(f"CPU: {bench_util.describe_cpu(cpu)}; load {os.getloadavg()[0]:.2f}")
  heads = " | ".join(f"{n} batches: s (% of a {_RUN_STEPS.value}-step run)"
                     for n in _RUN_BATCHES.value)
  print(f"| px | bn_init s/batch | train step s | first call s | {heads} |")
  print("|---|---|---|---|" + "---|" * len(_RUN_BATCHES.value))
  for r in results:
    cells = " | ".join(f"{v['seconds']:.1f} ({100 * v['fraction_of_run']:.1f}%)"
                       for v in r["runs"].values())
    print(f"| {r['image_size']} | {r['bn_init_s_per_batch']:.3f} | "
          f"{r['train_step_s']:.3f} | {r['first_call_s']:.1f} | {cells} |")
  payload = {"cpu": cpu, "load_average": os.getloadavg(),
             "batch_size": _BATCH_SIZE.value, "batches": _BATCHES.value,
             "results": results}
  atomic.write_text_atomic(_OUTPUT.value, json.dumps(payload, indent=2))


if __name__ == "__main__":
  app.run(main)
