"""End-to-end transfer runs of `experiments/run.py` on `tfds.testing.mock_data`.

One tiny run (MobileNetV2 0.35 at 32 px, random weights, 2 steps) per patch
kind, through the entry point (`run_from_flags`, absl's main), checking what it
leaves in the workdir.
"""

import json
import os

from absl import flags
from absl.testing import flagsaver
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from experiments import config_flags
from experiments import run as entry
from k4p1 import patches
from helpers.summaries import event_tags

FLAGS = flags.FLAGS
NUM_EXAMPLES = 6
# One spec per patch kind; kinds other than logits need a head, so they come
# with `+logits` (a single task has no shared head to borrow).
# The scale-only and bias-only baselines are in the slow tier: the same runner
# path as scale_bias+logits.
SPECS = ("logits", "scale_bias+logits",
         pytest.param("scale+logits", marks=pytest.mark.slow),
         pytest.param("bias+logits", marks=pytest.mark.slow),
         "depthwise+logits", "full")


pytestmark = pytest.mark.usefixtures("parsed_flags")


@pytest.mark.parametrize("spec", SPECS)
def test_transfer_main_writes_a_complete_workdir(spec, tmp_path):
  workdir = tmp_path / "run"
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES):
    with flagsaver.flagsaver(
        workdir=str(workdir), model="mobilenet_v2", weights="none", alpha=0.35,
        image_size=32, dataset="cifar10", patch=spec,
        batch_size=4, train_steps=2, eval_every=1, checkpoint_every=1,
        summary_every=1):
      entry.run_from_flags(["run"])

  results = json.loads((workdir / "results.json").read_text())
  config = json.loads((workdir / "config.json").read_text())
  canonical = str(patches.PatchSpec.parse(spec))
  assert results["patch"] == canonical == config["config"]["patch"]
  assert results["steps"] == results["optimizer_steps"] == 2
  # Which CPU kernels computed the run (they round differently).
  from tensorflow.python.util import _pywrap_util_port  # pylint: disable=g-import-not-at-top
  assert results["runtime"]["onednn"] is bool(_pywrap_util_port.IsMklEnabled())
  assert results["runtime"]["tensorflow"] == tf.__version__
  task = results["tasks"]["cifar10"]
  assert task["num_classes"] == 10 and task["examples"] == NUM_EXAMPLES
  assert 0.0 <= task["accuracy"] <= 1.0
  assert "--patch=" + spec in results["command"]
  params = results["params"]
  assert set(params) == {"patch_trainable", "patch_stored", "shared", "total"}
  assert params["total"] == params["patch_stored"] + params["shared"]
  head = 1280 * 10 + 10  # alpha 0.35 keeps MobileNetV2's 1280 features.
  assert params["patch_trainable"] >= head
  if spec == "logits":
    assert params["patch_trainable"] == params["patch_stored"] == head
  if spec == "full":
    assert params["shared"] == 0

  # The patch file holds exactly the stored parameters, under this spec.
  patch_file = workdir / "patches" / "cifar10.safetensors"
  assert results["patch_file"] == os.path.join("patches", "cifar10.safetensors")
  assert results["patch_file_bytes"] == patch_file.stat().st_size
  spec_json, arrays = patches.read_patch_file(str(patch_file))
  assert spec_json["spec"] == canonical and spec_json["task"] == "cifar10"
  assert sum(int(np.prod(a.shape)) for a in arrays.values()) == params["patch_stored"]

  # PreciseBN (on by default) set the statistics of every BN layer the run
  # trained in training mode, and both JSON files say so.
  trains_bn = spec in ("scale_bias+logits", "scale+logits", "bias+logits", "full")
  method = results["bn_statistics"]["method"]
  assert method == ("precise_bn" if trains_bn else "none")
  if trains_bn:
    assert results["bn_statistics"]["layers"] == 52  # MobileNetV2's BN layers.
    assert results["bn_statistics"]["batches"] == 2  # 6 train examples, batch 4.
    assert spec_json["bn_statistics"]["method"] == "precise_bn"
  # bn_init=preserve (the default) started those same layers as the base.
  init = results["bn_init"]
  assert init["method"] == "preserve"
  assert init["layers"] == (52 if trains_bn else 0)
  if trains_bn:
    assert init["exact"] == 52 and init["batches"] == 2 and init["seconds"] > 0
    assert spec_json["bn_init"] == {k: v for k, v in init.items() if k != "seconds"}

  assert (workdir / "checkpoints" / "checkpoint").exists()
  assert {"train/loss", "train/accuracy", "eval/accuracy", "learning_rate",
          "images_per_sec"} <= event_tags(str(workdir / "tensorboard"))
  assert not [p for p in workdir.rglob("*.tmp")]  # Atomic writes leave none.


def test_bad_flag_values_fail_before_building_anything(tmp_path, capsys):
  with flagsaver.flagsaver(workdir=str(tmp_path / "run"), strategy="gpu"):
    with pytest.raises(SystemExit) as exit_info:
      entry.run_from_flags(["run"])
  assert exit_info.value.code == 1
  message = capsys.readouterr().err
  assert "Unknown strategy 'gpu'" in message and "mirrored" in message
  assert not (tmp_path / "run").exists()


def test_config_file_is_overridden_by_given_flags(tmp_path):
  with flagsaver.flagsaver(workdir=str(tmp_path), config="tiny_cpu",
                           train_epochs=2.0, patch="logits"):
    config = config_flags.build_config(FLAGS)
  assert config.image_size == 32 and config.alpha == 0.35  # From the config.
  assert config.patch == "logits"  # Flag beats the config's default.
  # A length given as a flag replaces the config's other length.
  assert config.train_epochs == 2.0 and config.train_steps is None
  assert config.learning_rate is None  # Untouched default: the patch's, when resolved.


@pytest.mark.parametrize("options", [
    dict(patch="logits", cache_features=True),
    # Mixed precision runs are in the slow tier; test_perf_options.py trains
    # both policies for two steps in CI's tier.
    pytest.param(dict(patch="scale_bias+logits", mixed_precision="mixed_bfloat16"),
                 marks=pytest.mark.slow),
    pytest.param(dict(patch="scale_bias+logits", mixed_precision="mixed_float16"),
                 marks=pytest.mark.slow),
])
def test_performance_options_run_end_to_end(options, tmp_path):
  workdir = tmp_path / "run"
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES):
    with flagsaver.flagsaver(
        workdir=str(workdir), model="mobilenet_v2", weights="none", alpha=0.35,
        image_size=32, dataset="cifar10", batch_size=4,
        train_steps=2, eval_every=0, checkpoint_every=0, summary_every=1, **options):
      entry.run_from_flags(["run"])
  import keras  # pylint: disable=g-import-not-at-top
  assert keras.config.dtype_policy().name == "float32"  # Restored after the run.
  results = json.loads((workdir / "results.json").read_text())
  assert results["steps"] == 2
  assert np.isfinite(results["train"]["train/loss"])
  for key, value in options.items():
    if key != "patch":  # The config records the patch's canonical spelling.
      assert results["config"][key] == value
  # The patch loads onto a float32 base: its variables stayed float32.
  _, arrays = patches.read_patch_file(str(workdir / "patches" / "cifar10.safetensors"))
  assert all(a.dtype == np.float32 for a in arrays.values())
