r"""Where a training step's time goes: a TF profiler trace and an op-type table.

Builds MobileNetV2 (random weights) with a patch, warms up
`k4p1.train.make_train_step`, then records `--steps` steps with the TF
profiler into `--logdir` (open it in TensorBoard's Profile tab, if the
profile plugin is installed) and prints the time per step by op type, read
from the trace itself (the `.xplane.pb`), so it works without the plugin.

  python benchmarks/profile_step.py --patch=scale_bias+logits --image_size=96
  python benchmarks/profile_step.py --patch=full --nofused_batch_norm

Op times are wall durations of each op's kernel, summed per type; ops run
concurrently on the cores (inter-op parallelism), so the sum exceeds the
step's wall time.
"""

import collections
import glob
import json
import os
import time

from absl import app
from absl import flags
import keras
import numpy as np
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from k4p1 import atomic
from k4p1 import models
from k4p1 import patches
from k4p1 import train

_PATCH = flags.DEFINE_string("patch", "scale_bias+logits", "Patch spec.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 96, "Input size (px).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Batch size.")
_STEPS = flags.DEFINE_integer("steps", 3, "Profiled steps.")
_FUSED_BN = flags.DEFINE_bool("fused_batch_norm", True, "k4p1's fused BN.")
_TOP = flags.DEFINE_integer("top", 20, "Op types listed.")
_LOGDIR = flags.DEFINE_string("logdir", "/tmp/k4p1_profile", "Trace directory.")
_OUTPUT = flags.DEFINE_string("output", None, "Optional JSON of the table.")
_NOT_OPS = frozenset({"Run", "Process", "DoCompute", "Done", "Start", "Root"})


def op_type_times(logdir: str) -> collections.Counter:
  """Milliseconds per TF op type in the newest trace under `logdir`."""
  paths = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"),
                           recursive=True), key=os.path.getmtime)
  space = xplane_pb2.XSpace()
  with open(paths[-1], "rb") as f:
    space.ParseFromString(f.read())
  times = collections.Counter()
  for plane in space.planes:
    if not plane.name.startswith("/host:CPU") and "GPU" not in plane.name:
      continue
    for line in plane.lines:
      for event in line.events:
        name = plane.event_metadata[event.metadata_id].name.strip()
        # TF op events are named "<op name>:<op type>".
        if (":" not in name or "::" in name or
            name.startswith(("$", "__inference"))):
          continue  # tf.data, executor and function events, not TF ops.
        op_type = name.rsplit(":", 1)[1].strip()
        if (op_type and op_type not in _NOT_OPS and
            not op_type.startswith("__")):  # "__inference_*": function calls.
          times[op_type] += event.duration_ps / 1e9
  return times


def main(argv):
  del argv
  keras.utils.set_random_seed(0)
  size, batch = _IMAGE_SIZE.value, _BATCH_SIZE.value
  base = models.build_backbone("mobilenet_v2", size, weights=None)
  task = patches.apply_patch(base, _PATCH.value, task="t", num_classes=100)
  rng = np.random.default_rng(0)
  dataset = tf.data.Dataset.from_tensors((
      rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32),
      rng.integers(0, 100, batch).astype(np.int32))).repeat()
  variables = train.unique_trainable_variables([task])
  optimizer = train.build_optimizer("rmsprop", 0.01)
  optimizer.build(variables)
  train_step = train.make_train_step(
      tf.distribute.get_strategy(),
      [train.TrainTask("t", task, 100, dataset, batch)], optimizer, variables,
      tf.Variable(0, dtype=tf.int64), fused_batch_norm=_FUSED_BN.value)
  iterators = (iter(dataset),)
  for _ in range(3):
    train_step(iterators)["t/count"].numpy()
  began = time.perf_counter()
  for _ in range(_STEPS.value):
    train_step(iterators)["t/count"].numpy()
  step_ms = (time.perf_counter() - began) / _STEPS.value * 1e3
  tf.profiler.experimental.start(_LOGDIR.value)
  for _ in range(_STEPS.value):
    train_step(iterators)["t/count"].numpy()
  tf.profiler.experimental.stop()
  times = op_type_times(_LOGDIR.value)
  per_step = {k: v / _STEPS.value for k, v in times.most_common()}
  print(f"{_PATCH.value}, {size} px, batch {batch}, fused_batch_norm="
        f"{_FUSED_BN.value}: {step_ms:.0f} ms/step unprofiled "
        f"({batch / step_ms * 1e3:.1f} images/sec); trace in {_LOGDIR.value}")
  print("| op type | ms/step |")
  print("|---|---|")
  for name, ms in list(per_step.items())[:_TOP.value]:
    print(f"| {name} | {ms:.1f} |")
  print(f"| (all op types) | {sum(per_step.values()):.1f} |")
  if _OUTPUT.value:
    atomic.write_text_atomic(_OUTPUT.value, json.dumps(
        {"patch": _PATCH.value, "image_size": size, "batch_size": batch,
         "fused_batch_norm": _FUSED_BN.value, "step_ms": step_ms,
         "op_ms_per_step": per_step}, indent=2))


if __name__ == "__main__":
  app.run(main)
