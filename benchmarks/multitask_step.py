r"""Multi-task cost: K patch tasks sharing one base vs a single task.

Builds MobileNetV2 (random weights) and K task models of one patch spec on it
(`apply_patch` with tasks t0..t{K-1}), and times `k4p1.train.make_train_step`
over all K tasks (one batch per task per step, one optimizer update). Each K
runs in its own worker process (peak RSS = VmHWM of that process); workers
are timed round-robin, median over rounds. Prints a table and writes JSON.

  python benchmarks/multitask_step.py                      # K=1 vs K=5, 96 px
  python benchmarks/multitask_step.py --num_tasks=1,5 --image_size=224 --rounds=3

Targets (issue 8): peak memory of K=5 <= 1.3x K=1; time per step <= 5x.
"""

import json
import os
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

import bench_util  # Beside this script (benchmarks/).
from k4p1 import atomic  # Standard library only: the parent stays TF-free.

_NUM_TASKS = flags.DEFINE_list("num_tasks", ["1", "5"], "Task counts K.")
_SPEC = flags.DEFINE_string("patch", "scale_bias+logits", "Patch of every task.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 96, "Input size (px).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Batch per task.")
_STEPS = flags.DEFINE_integer("steps", 3, "Timed steps per round.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Round-robin rounds.")
_ALLOCATOR = flags.DEFINE_enum("cpu_allocator", "inherit",
                               list(bench_util.CPU_ALLOCATORS),
                               bench_util.CPU_ALLOCATOR_HELP)
_OUTPUT = flags.DEFINE_string("output", "multitask_step.json", "JSON path.")
_WORKER = flags.DEFINE_integer("worker", None, "Internal: K of this worker.")


def _serve(num_tasks: int) -> None:
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from k4p1 import models  # pylint: disable=g-import-not-at-top
  from k4p1 import patches  # pylint: disable=g-import-not-at-top
  from k4p1 import train  # pylint: disable=g-import-not-at-top

  keras.utils.set_random_seed(0)
  size, batch = _IMAGE_SIZE.value, _BATCH_SIZE.value
  base = models.build_backbone("mobilenet_v2", size, weights=None)
  rng = np.random.default_rng(0)
  tasks = []
  for k in range(num_tasks):
    model = patches.apply_patch(base, _SPEC.value, task=f"t{k}", num_classes=10)
    data = tf.data.Dataset.from_tensors((
        rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32),
        rng.integers(0, 10, batch).astype(np.int32))).repeat()
    tasks.append(train.TrainTask(f"t{k}", model, 10, data, batch))
  variables = train.unique_trainable_variables([t.model for t in tasks])
  optimizer = train.build_optimizer("rmsprop", 0.01)
  optimizer.build(variables)
  train_step = train.make_train_step(tf.distribute.get_strategy(), tasks,
                                     optimizer, variables,
                                     tf.Variable(0, dtype=tf.int64))
  iterators = tuple(iter(t.train_dataset) for t in tasks)

  def run(steps):
    began = time.perf_counter()
    for _ in range(steps):
      outputs = train_step(iterators)
    outputs["t0/count"].numpy()
    return time.perf_counter() - began

  run(2)
  print("READY " + json.dumps(bench_util.tf_runtime()), flush=True)
  for line in sys.stdin:
    if not line.startswith("run"):
      return
    cpu_began = bench_util.cpu_seconds()
    seconds = run(int(line.split()[1]))
    print(json.dumps({"seconds": seconds,
                      "cpu_seconds": bench_util.cpu_seconds() - cpu_began,
                      "peak_rss_mb": bench_util.peak_rss_mb()}), flush=True)


def main(argv):
  del argv
  if _WORKER.value:
    _serve(_WORKER.value)
    return
  load_before = os.getloadavg()
  counts = [int(k) for k in _NUM_TASKS.value]
  forwarded = [a for a in sys.argv[1:] if not a.startswith(("--output",
                                                            "--num_tasks"))]
  workers = {k: subprocess.Popen(
      [sys.executable, os.path.abspath(__file__), f"--worker={k}"] + forwarded,
      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
      env=bench_util.worker_environment(_ALLOCATOR.value)) for k in counts}
  samples = {k: [] for k in counts}
  cpu = {k: [] for k in counts}
  peaks = {k: [] for k in counts}
  runtime = None
  try:
    for k, process in workers.items():
      for line in process.stdout:
        if line.startswith("READY"):
          runtime = json.loads(line[len("READY"):])
          break
      else:
        raise RuntimeError(f"Worker K={k} exited with {process.wait()}.")
    for _ in range(_ROUNDS.value):
      for k, process in workers.items():
        process.stdin.write(f"run {_STEPS.value}\n")
        process.stdin.flush()
        answer = json.loads(process.stdout.readline())
        samples[k].append(answer["seconds"] / _STEPS.value)
        cpu[k].append(answer["cpu_seconds"] / _STEPS.value)
        peaks[k].append(answer["peak_rss_mb"])
  finally:
    for process in workers.values():
      try:
        process.stdin.write("quit\n")
        process.stdin.flush()
      except BrokenPipeError:
        pass
      bench_util.stop(process)
  reference = counts[0]
  rows = {}
  for k in counts:
    seconds = statistics.median(samples[k])
    rows[str(k)] = {
        "seconds_per_step": seconds, "rounds": samples[k],
        "cpu_seconds_per_step": statistics.median(cpu[k]),
        "images_per_sec": k * _BATCH_SIZE.value / seconds,
        # Peak RSS so far after each round: flat at the end = stable.
        "peak_rss_mb": peaks[k][-1], "peak_rss_mb_rounds": peaks[k],
        "time_ratio": seconds / statistics.median(samples[reference]),
        "cpu_time_ratio": (statistics.median(cpu[k]) /
                           statistics.median(cpu[reference])),
        "memory_ratio": peaks[k][-1] / peaks[reference][-1]}
  report = {
      "benchmark": "multitask_step",
      "command": " ".join(["python", "benchmarks/multitask_step.py"] + sys.argv[1:]),
      "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
      "patch": _SPEC.value, "image_size": _IMAGE_SIZE.value,
      "batch_size_per_task": _BATCH_SIZE.value, "steps_per_round": _STEPS.value,
      "rounds": _ROUNDS.value, "load_average_before": load_before,
      "load_average_after": os.getloadavg(), "runtime": runtime,
      "cpu": bench_util.cpu_description(), "results": rows}
  atomic.write_text_atomic(_OUTPUT.value, json.dumps(report, indent=2))
  print(f"CPU: {bench_util.describe_cpu(report['cpu'])}; "
        f"{bench_util.describe_runtime(runtime)}")
  print(f"{_SPEC.value}, {_IMAGE_SIZE.value} px, batch {_BATCH_SIZE.value} per "
        f"task, {_ROUNDS.value} rounds; load average {load_before[0]:.2f} -> "
        f"{os.getloadavg()[0]:.2f}")
  print(f"| K | s/step | CPU s/step | images/sec | peak RSS MB (after each "
        f"round) | time vs K={reference} | CPU time vs K={reference} | "
        f"memory vs K={reference} |")
  print("|---|---|---|---|---|---|---|---|")
  for k, row in rows.items():
    print(f"| {k} | {row['seconds_per_step']:.3f} | "
          f"{row['cpu_seconds_per_step']:.3f} | {row['images_per_sec']:.1f} | "
          f"{row['peak_rss_mb']:.0f} "
          f"({', '.join(f'{p:.0f}' for p in row['peak_rss_mb_rounds'])}) | "
          f"{row['time_ratio']:.2f} | {row['cpu_time_ratio']:.2f} | "
          f"{row['memory_ratio']:.2f} |")
  print(f"Wrote {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
