r"""What PreciseBN costs: its pass next to inference and a training step.

For each image size, MobileNetV2 (random weights; speed does not depend on
them) with a `scale_bias+logits` patch, in-memory batches (the input pipeline
is not measured):
  inference    the forward pass, `training=False` (fused BN): the floor;
  precise_bn   `k4p1.train.precise_bn.PreciseBatchNorm.update` over
               `--batches` batches (training-mode forward, no gradient,
               statistics summed in float64), after a first, traced call;
  train_step   `k4p1.train.make_train_step` of the same patch (forward,
               backward, RMSProp): what one PreciseBN batch is compared to.
It also reports the first PreciseBN call (tracing included) and what a
default PreciseBN (200 batches) costs in seconds and in training steps.

  python benchmarks/precise_bn.py                      # 224 and 96 px
  python benchmarks/precise_bn.py --image_sizes=96 --output=/tmp/pbn.json
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

_IMAGE_SIZES = flags.DEFINE_list("image_sizes", ["224", "96"], "Input sizes (px).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Batch size.")
_BATCHES = flags.DEFINE_integer("batches", 8, "Batches per timed pass.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Timed passes per regime (median).")
_OUTPUT = flags.DEFINE_string("output", "precise_bn.json", "JSON result path.")


def measure(size: int) -> dict:
  """Images/sec of the three regimes at `size` px."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from k4p1 import models, patches, train  # pylint: disable=g-import-not-at-top
  from k4p1.train import precise_bn  # pylint: disable=g-import-not-at-top

  batch, batches = _BATCH_SIZE.value, _BATCHES.value
  keras.utils.set_random_seed(0)
  base = models.build_backbone("mobilenet_v2", size, weights=None)
  model = patches.apply_patch(base, "scale_bias+logits", task="t", num_classes=100)
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (batch * batches, size, size, 3)).astype("float32")
  labels = rng.integers(0, 100, batch * batches).astype("int32")
  dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch).cache()

  @tf.function
  def infer(ds):
    total = tf.constant(0.0)
    for x, _ in ds:
      total += tf.reduce_sum(model(x, training=False))
    return total

  updater = precise_bn.PreciseBatchNorm([(model, dataset)])
  began = time.perf_counter()
  updater.update()
  first_call = time.perf_counter() - began
  infer(dataset)  # Trace.

  strategy = tf.distribute.get_strategy()
  variables = train.unique_trainable_variables([model])
  optimizer = train.build_optimizer("rmsprop", 0.01, momentum=0.9, rho=0.9,
                                    epsilon=1.0)
  optimizer.build(variables)
  step = tf.Variable(0, dtype=tf.int64)
  task = train.TrainTask("t", model, 100, dataset.repeat(), batch)
  train_step = train.make_train_step(strategy, [task], optimizer, variables, step)
  iterator = iter(dataset.repeat())
  train_step((iterator,))  # Trace.

  def timed(fn):
    seconds = []
    for _ in range(_ROUNDS.value):
      began = time.perf_counter()
      fn()
      seconds.append(time.perf_counter() - began)
    return batch * batches / statistics.median(seconds)

  rates = {
      "inference": timed(lambda: infer(dataset).numpy()),
      "precise_bn": timed(updater.update),
      "train_step": timed(lambda: [train_step((iterator,))["t/count"].numpy()
                                   for _ in range(batches)]),
  }
  default_seconds = 200 * batch / rates["precise_bn"]
  return {
      "image_size": size, "batch_size": batch, "images_per_sec": rates,
      "precise_bn_vs_inference": rates["precise_bn"] / rates["inference"],
      "precise_bn_vs_train_step": rates["precise_bn"] / rates["train_step"],
      "first_call_s": first_call,
      "default_200_batches_s": default_seconds,
      "default_200_batches_in_train_steps": 200 * rates["train_step"] / rates["precise_bn"],
  }


def main(argv):
  del argv
  results = [measure(int(s)) for s in _IMAGE_SIZES.value]
  print(f"CPU: {bench_util.cpu_model()} "
        f"({', '.join(bench_util.vector_extensions())}), "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
  print("| px | inference img/s | PreciseBN img/s | train step img/s | "
        "PreciseBN / inference | first call s | 200 batches s (= train steps) |")
  print("|---|---|---|---|---|---|---|")
  for r in results:
    rates = r["images_per_sec"]
    print(f"| {r['image_size']} | {rates['inference']:.1f} | "
          f"{rates['precise_bn']:.1f} | {rates['train_step']:.1f} | "
          f"{r['precise_bn_vs_inference']:.2f} | {r['first_call_s']:.1f} | "
          f"{r['default_200_batches_s']:.0f} "
          f"(= {r['default_200_batches_in_train_steps']:.0f}) |")
  payload = {"cpu": bench_util.cpu_model(),
             "vector_extensions": bench_util.vector_extensions(),
             "cores": os.cpu_count(), "load_average": os.getloadavg(),
             "batch_size": _BATCH_SIZE.value, "batches": _BATCHES.value,
             "results": results}
  atomic.write_text_atomic(_OUTPUT.value, json.dumps(payload, indent=2))


if __name__ == "__main__":
  app.run(main)
