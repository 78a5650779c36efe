"""`--deterministic`: the same command twice gives the same patch file, byte for byte.

Op determinism is process-wide and cannot be undone, so each run is its own
process (as a user runs it), not a call inside the test process.
"""

import json
import os
import subprocess
import sys

import pytest

# Results depend on the CPU kernels (oneDNN or Eigen): .ci/run runs these
# again with the other family (conftest.py, `kernels`).
pytestmark = pytest.mark.kernels

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_transfer(workdir):
  command = [sys.executable, "-m", "experiments.transfer", "--deterministic",
             "--weights=none", "--alpha=0.35", "--image_size=32",
             "--dataset=mnist5k:5-9", "--patch=scale_bias+logits",
             "--batch_size=32", "--train_steps=12", "--eval_every=0",
             "--checkpoint_every=0", f"--workdir={workdir}"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
  proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((workdir / "results.json").read_text())
  return results, (workdir / "patches" / "mnist5k_5-9.safetensors").read_bytes()


@pytest.mark.slow
def test_deterministic_reruns_give_identical_patch_bytes(tmp_path):
  first, first_bytes = run_transfer(tmp_path / "a")
  second, second_bytes = run_transfer(tmp_path / "b")
  assert first["config"]["deterministic"] is True
  assert first["bn_statistics"]["method"] == "precise_bn"
  assert first_bytes == second_bytes
  assert first["tasks"] == second["tasks"]  # Same accuracy, same examples.
  assert first["train"]["train/loss"] == second["train"]["train/loss"]
