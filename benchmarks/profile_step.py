r"""Where a training step's time goes: TF profiler traces and an op-type table.

Builds MobileNetV2 (random weights) with each patch of `--patches` in one
process, warms up each one's `k4p1.train.make_train_step`, then, for
`--rounds` rounds, records `--steps` steps of every patch in turn with the TF
profiler (interleaved, so load from other processes hits every patch alike)
and prints the time per step by op type, read from the traces themselves (the
`.xplane.pb`, so it works without TensorBoard's profile plugin): the median
over rounds, one column per patch, and the difference from the first patch.
Beside it, per patch: unprofiled wall and CPU time per step (user and system
separately) and minor page faults per step, and the CPU's model, vector
extensions and TensorFlow's kernels and allocator (oneDNN, BFC).

  python benchmarks/profile_step.py --patches=scale_bias+logits --image_size=96
  python benchmarks/profile_step.py --image_size=224 --threads=1 --rounds=3 \
      --patches=full,scale_bias+logits,scale_bias+depthwise+logits

Op times are wall durations of each op's kernel, summed per type. With
`--threads=0` (TensorFlow's default) ops run concurrently on the cores, so the
sum can exceed the step's wall time; `--threads=1` runs one op at a time on
one thread, so each op's time is its work (and their sum the step's). The
traces are in `--logdir`/<patch>/round<r> (TensorBoard's Profile tab).
"""

import collections
import glob
import json
import os
import resource
import statistics
import sys
import time

from absl import app
from absl import flags

import bench_util  # Beside this script (benchmarks/).

_PATCHES = flags.DEFINE_list("patches", ["scale_bias+logits"], "Patch specs.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 96, "Input size (px).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Batch size.")
_STEPS = flags.DEFINE_integer("steps", 3, "Profiled steps per patch per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 1, "Interleaved rounds (median).")
_THREADS = flags.DEFINE_integer("threads", 0, "Intra- and inter-op threads "
                                "(0: TensorFlow's default, one per core).")
_FUSED_BN = flags.DEFINE_bool("fused_batch_norm", True, "k4p1's fused BN.")
_TOP = flags.DEFINE_integer("top", 20, "Op types listed.")
_LOGDIR = flags.DEFINE_string("logdir", "/tmp/k4p1_profile", "Trace directory.")
_OUTPUT = flags.DEFINE_string("output", None, "Optional JSON of the tables.")
_NOT_OPS = frozenset({"Run", "Process", "DoCompute", "Done", "Start", "Root"})


def op_type_times(logdir: str) -> collections.Counter:
  """Milliseconds per TF op type in the newest trace under `logdir`."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
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


def _build_step(patch: str):
  """A warmed-up `run(steps)` of one patch's training step."""
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from k4p1 import models  # pylint: disable=g-import-not-at-top
  from k4p1 import patches  # pylint: disable=g-import-not-at-top
  from k4p1 import train  # pylint: disable=g-import-not-at-top

  keras.utils.set_random_seed(0)
  size, batch = _IMAGE_SIZE.value, _BATCH_SIZE.value
  base = models.build_backbone("mobilenet_v2", size, weights=None)
  task = patches.apply_patch(base, patch, task="t", num_classes=100)
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

  def run(steps):
    for _ in range(steps):
      train_step(iterators)["t/count"].numpy()

  run(3)
  return run


def _timed(run, steps: int) -> dict:
  """Wall, user and system ms per step and minor page faults per step."""
  before, began = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
  run(steps)
  wall = time.perf_counter() - began
  after = resource.getrusage(resource.RUSAGE_SELF)
  return {"wall_ms": 1e3 * wall / steps,
          "user_ms": 1e3 * (after.ru_utime - before.ru_utime) / steps,
          "system_ms": 1e3 * (after.ru_stime - before.ru_stime) / steps,
          "page_faults": (after.ru_minflt - before.ru_minflt) / steps}


def _median_table(rounds) -> dict:
  """{op type: median ms/step over rounds} (0 where a round lacks the op)."""
  types = set().union(*rounds)
  return {t: statistics.median([r.get(t, 0.0) for r in rounds]) for t in types}


def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if _THREADS.value:
    tf.config.threading.set_intra_op_parallelism_threads(_THREADS.value)
    tf.config.threading.set_inter_op_parallelism_threads(_THREADS.value)
  load_before = os.getloadavg()
  runs = {patch: _build_step(patch) for patch in _PATCHES.value}
  for run in runs.values():
    run(2)  # The first calls after building another model are slow.
  samples = {patch: {"ops": [], "timing": []} for patch in runs}
  for round_index in range(_ROUNDS.value):
    for patch, run in runs.items():
      samples[patch]["timing"].append(_timed(run, _STEPS.value))
      logdir = os.path.join(_LOGDIR.value, patch, f"round{round_index}")
      tf.profiler.experimental.start(logdir)
      run(_STEPS.value)
      tf.profiler.experimental.stop()
      samples[patch]["ops"].append(
          {k: v / _STEPS.value for k, v in op_type_times(logdir).items()})
  results = {}
  for patch, sample in samples.items():
    timing = {k: statistics.median([t[k] for t in sample["timing"]])
              for k in sample["timing"][0]}
    results[patch] = dict(timing, op_ms_per_step=_median_table(sample["ops"]),
                          rounds=sample)
  report = {
      "benchmark": "profile_step",
      "command": " ".join(["python", "benchmarks/profile_step.py"] +
                          sys.argv[1:]),
      "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
      "image_size": _IMAGE_SIZE.value, "batch_size": _BATCH_SIZE.value,
      "steps": _STEPS.value, "rounds": _ROUNDS.value,
      "threads": _THREADS.value, "fused_batch_norm": _FUSED_BN.value,
      "load_average_before": load_before, "load_average_after": os.getloadavg(),
      "cpu": bench_util.cpu_description(), "runtime": bench_util.tf_runtime(),
      "tensorflow": tf.__version__, "results": results}
  _print(report)
  if _OUTPUT.value:
    from k4p1 import atomic  # pylint: disable=g-import-not-at-top
    atomic.write_text_atomic(_OUTPUT.value, json.dumps(report, indent=2))


def _print(report: dict) -> None:
  cpu, runtime, results = report["cpu"], report["runtime"], report["results"]
  patches = list(results)
  print(f"CPU: {bench_util.describe_cpu(cpu)}; TensorFlow "
        f"{report['tensorflow']}, {bench_util.describe_runtime(runtime)}; threads "
        f"{report['threads'] or 'default'}; load average "
        f"{report['load_average_before'][0]:.2f} -> "
        f"{report['load_average_after'][0]:.2f}")
  print(f"{report['image_size']} px, batch {report['batch_size']}, "
        f"fused_batch_norm={report['fused_batch_norm']}, median of "
        f"{report['rounds']} round(s) of {report['steps']} steps; traces in "
        f"{_LOGDIR.value}")
  others = patches[1:]  # Each gets a column of its difference to the first.
  print("| op type (ms/step) | " + " | ".join(patches) + "".join(
      f" | {p} − {patches[0]}" for p in others) + " |")
  print("|---" * (len(patches) + len(others) + 1) + "|")
  tables = [results[p]["op_ms_per_step"] for p in patches]

  def row(label, values, digits):
    print(f"| {label} | " + " | ".join(f"{v:.{digits}f}" for v in values) +
          "".join(f" | {v - values[0]:+.{digits}f}" for v in values[1:]) + " |")

  order = sorted(set().union(*tables),
                 key=lambda t: -max(x.get(t, 0.0) for x in tables))
  for op_type in order[:_TOP.value]:
    row(op_type, [x.get(op_type, 0.0) for x in tables], 1)
  row("all op types", [sum(x.values()) for x in tables], 0)
  for label, key in (("wall ms/step (unprofiled)", "wall_ms"),
                     ("CPU user ms/step", "user_ms"),
                     ("CPU system ms/step", "system_ms"),
                     ("minor page faults/step", "page_faults")):
    row(label, [results[p][key] for p in patches], 0)

if __name__ == "__main__":
  app.run(main)
