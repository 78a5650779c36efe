"""Smoke test of `experiments/demo.py` with tiny settings (a few steps).

Runs the command in a subprocess: it is the README's first command, and each
experiment script owns its absl flags (two scripts in one process would
define `--workdir` twice).
"""

import json
import pathlib
import re
import subprocess
import sys

import pytest

# Results depend on the CPU kernels (oneDNN or Eigen): .ci/run runs these
# again with the other family (conftest.py, `kernels`).
pytestmark = pytest.mark.kernels

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_demo_pretrains_then_trains_each_patch(tmp_path):
  workdir = tmp_path / "demo"
  completed = subprocess.run(
      [sys.executable, "-m", "experiments.demo", f"--workdir={workdir}",
       "--patches=logits,scale_bias+logits", "--pretrain_steps=3", "--steps=2",
       "--batch_size=16"],
      cwd=REPO, capture_output=True, text=True, timeout=900)
  assert completed.returncode == 0, completed.stderr[-3000:]
  printed = completed.stdout

  backbone = workdir / "pretrain" / "backbone.weights.h5"
  assert backbone.exists()
  pretrain = json.loads((workdir / "pretrain" / "results.json").read_text())
  assert pretrain["experiment"] == "pretrain" and pretrain["steps"] == 3
  assert pretrain["tasks"]["mnist5k_0-4"]["num_classes"] == 5
  rows = json.loads((workdir / "demo.json").read_text())["rows"]
  assert [r["patch"] for r in rows] == ["logits", "logits+scale_bias"]
  for run, row in zip(("logits", "scale_bias_logits"), rows):
    results = json.loads((workdir / run / "results.json").read_text())
    # Each patch run starts from the pretrained backbone, on the other digits.
    assert results["config"]["weights"] == str(backbone.resolve())
    assert results["tasks"]["mnist5k_5-9"]["examples"] == 500
    assert results["command"].startswith("python -m experiments.demo ")
    # Defaults: Keras' BN momentum, PreciseBN, op determinism.
    assert results["config"]["bn_momentum"] is None
    assert results["config"]["deterministic"] is True
    assert results["bn_statistics"]["method"] == (
        "precise_bn" if "scale_bias" in run else "none")
    assert row["trained_params"] == results["params"]["patch_trainable"]
    patch_file = workdir / run / "patches" / "mnist5k_5-9.safetensors"
    assert row["patch_bytes"] == patch_file.stat().st_size
    assert list((workdir / run / "tensorboard").iterdir())
    assert f"| {row['patch']} | {row['accuracy']:.3f} |" in printed
  assert rows[1]["trained_params"] > rows[0]["trained_params"]
  assert (workdir / "table.md").read_text().strip() in printed
  # Which CPU kernels computed the table (they round differently).
  from tensorflow.python.util import _pywrap_util_port  # pylint: disable=g-import-not-at-top
  kernels = "on" if _pywrap_util_port.IsMklEnabled() else "off"
  assert f"CPU kernels: oneDNN {kernels}" in printed
  # The log a person reads: compact lines, no TensorFlow chatter, no detail.
  log = completed.stderr
  assert "Demo: a MobileNetV2" in log and "step 2/2: loss" in log
  assert "eval at step 2: mnist5k_5-9 accuracy" in log
  for chatter in ("Sharding callback", "retracing", "absl::InitializeLog",
                  "Saved checkpoint", "Weights digest"):
    assert chatter not in log, chatter
  assert all(re.match(r"\d\d:\d\d:\d\d \S", line) for line in log.splitlines()), log

