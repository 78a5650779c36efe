r"""Scaling on this machine: one process vs two workers of a multi-worker run.

Runs the same transfer run (MobileNetV2, random weights, `--patch`, the same
global batch) twice: as one process (`--strategy=default`) and as two worker
processes on 127.0.0.1 (`experiments.local_cluster --workers=2`,
`MultiWorkerMirroredStrategy`, each worker half of the batch). It reports
results.json's training images/sec (global examples per second of training
steps; the first, tracing step excluded). On one machine the two workers
share its cores and talk over loopback: this measures the overhead of the
multi-worker path, not the speed-up of real hosts.

  python benchmarks/multi_worker.py                       # 96 px, 60 steps
  python benchmarks/multi_worker.py --image_size=224 --steps=30
"""

import json
import os
import subprocess
import sys
import tempfile

from absl import app
from absl import flags

import bench_util
from k4p1 import atomic

_IMAGE_SIZE = flags.DEFINE_integer("image_size", 96, "Input size (px).")
_STEPS = flags.DEFINE_integer("steps", 60, "Training steps of each run.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Global batch size.")
_PATCH = flags.DEFINE_string("patch", "scale_bias+logits", "Patch spec.")
_OUTPUT = flags.DEFINE_string("output", "multi_worker.json", "JSON result path.")


def _run(command: list, workdir: str) -> dict:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


def main(argv):
  del argv
  root = tempfile.mkdtemp(prefix="k4p1_mw_bench_")
  flags_ = [f"--image_size={_IMAGE_SIZE.value}", f"--batch_size={_BATCH.value}",
            f"--train_steps={_STEPS.value}", f"--patch={_PATCH.value}",
            "--dataset=mnist5k:0-4", "--weights=none", "--eval_every=0",
            "--checkpoint_every=0", "--precise_bn_batches=1",
            "--summary_every=10"]
  single = _run([sys.executable, "-m", "experiments.transfer", *flags_,
                 f"--workdir={root}/single"], f"{root}/single")
  multi = _run([sys.executable, "-m", "experiments.local_cluster", "--workers=2",
                "--", *flags_, f"--workdir={root}/multi"], f"{root}/multi")
  rows = {"one_process": single, "two_workers": multi}
  report = {
      "cpu": bench_util.cpu_model(),
      "vector_extensions": bench_util.vector_extensions(),
      "cores": os.cpu_count(), "image_size": _IMAGE_SIZE.value,
      "global_batch": _BATCH.value, "steps": _STEPS.value, "patch": _PATCH.value,
      "command": " ".join(["python", "benchmarks/multi_worker.py"] + sys.argv[1:]),
      "images_per_sec": {k: r["images_per_sec"] for k, r in rows.items()},
      "wall_s": {k: r["wall_s"] for k, r in rows.items()},
  }
  report["two_workers_vs_one_process"] = (
      report["images_per_sec"]["two_workers"] /
      report["images_per_sec"]["one_process"])
  print(f"CPU: {report['cpu']} ({report['cores']} cores); "
        f"{_IMAGE_SIZE.value} px, global batch {_BATCH.value}, {_PATCH.value}")
  print("| run | images/sec | wall s |\n|---|---|---|")
  for name in rows:
    print(f"| {name} | {report['images_per_sec'][name]:.1f} | "
          f"{report['wall_s'][name]:.0f} |")
  print(f"two workers / one process: {report['two_workers_vs_one_process']:.2f}x")
  atomic.write_text_atomic(_OUTPUT.value, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
  app.run(main)
