"""Multi-task RunConfig validation, the task samplers, flags, and a multires run."""

import collections
import json

from absl import flags
from absl.testing import flagsaver
import numpy as np
import pytest

from experiments import config_flags
from experiments import run as entry
from k4p1 import patches
from k4p1 import train
from k4p1.report import collect
from k4p1.report import grids

FLAGS = flags.FLAGS


pytestmark = pytest.mark.usefixtures("parsed_flags")


def config(**overrides):
  values = dict(workdir="/tmp/unused", weights=None, alpha=0.35, image_size=32,
                tasks=("mnist5k:5-6", "mnist5k:7-9"))
  values.update(overrides)
  return train.RunConfig(**values)


@pytest.mark.parametrize("overrides, message", [
    (dict(shared="both"), "valid choices: frozen, trained"),
    (dict(task_sampling="random"), "valid choices: all, round_robin, proportional"),
    (dict(tasks=()), "No task: set dataset"),
    (dict(tasks=("mnist5k:5-6", "nosuchset")), "Unknown dataset 'nosuchset'"),
    (dict(task_names=("a",)), "task_names has 1 entries for the 2 tasks"),
    (dict(tasks=("digits", "digits")), "repeat a name"),
    (dict(task_names=("a@1", "a:1")), "repeat a name"),
    (dict(task_names=("a b", "c")), "Invalid task names"),
    (dict(strategy="gpu"), "Unknown strategy 'gpu'"),
    (dict(sequential=True, shared="trained"), "shared must be 'frozen'"),
    (dict(tasks=(), image_size=None, dataset="digits", resolutions=(32, 32)),
     "repeat a size"),
    (dict(tasks=(), image_size=None, dataset="digits", resolutions=(32,),
          patch="logits"), "per-resolution kinds"),
    (dict(image_size=None, dataset="digits", resolutions=(32, 40)),
     "or tasks .* not both"),
    (dict(image_sizes=(32, 8)), "image size must be an integer >= 32"),
])
def test_validate_names_the_bad_value(overrides, message):
  with pytest.raises(ValueError, match=message.replace("(", r"\(")):
    train.check_config(config(**overrides))


def test_resolved_fills_names_and_sizes():
  resolved = train.resolve(config(image_size=None, image_sizes=(32, 40))).config
  assert resolved.task_names == ("mnist5k_5-6", "mnist5k_7-9")
  assert resolved.export_image_size == 40 and resolved.dataset is None
  multires = train.resolve(config(tasks=(), image_size=None, dataset="digits",
                                  resolutions=(48, 32)))
  assert [p.name for p in multires.tasks] == ["digits@48", "digits@32"]
  assert [p.model_name for p in multires.tasks] == ["digits_48", "digits_32"]
  assert multires.experiment == "multires"
  assert str(multires.spec) == "scale_bias"  # The head is shared: no logits.


def test_samplers_are_pure_functions_of_step_and_seed():
  weights = [100, 300]
  first = [train.sample_task(s, 7, weights, "proportional") for s in range(2000)]
  again = [train.sample_task(s, 7, weights, "proportional") for s in range(2000)]
  other_seed = [train.sample_task(s, 8, weights, "proportional") for s in range(2000)]
  assert first == again and first != other_seed
  share = collections.Counter(first)[1] / len(first)
  assert 0.70 < share < 0.80  # 300 / 400, within sampling noise of 2000 draws.
  assert [train.sample_task(s, 0, [1, 1, 1], "round_robin") for s in range(5)] == [
      0, 1, 2, 0, 1]
  with pytest.raises(ValueError, match="valid choices: round_robin, proportional"):
    train.sample_task(0, 0, weights, "all")


def test_bad_flags_fail_before_building_anything(tmp_path, capsys):
  with flagsaver.flagsaver(workdir=str(tmp_path / "run"), tasks=["digits"],
                           task_sampling="bogus"):
    with pytest.raises(SystemExit) as exit_info:
      entry.run_from_flags(["run"])
  assert exit_info.value.code == 1
  assert "Unknown task_sampling 'bogus'" in capsys.readouterr().err
  assert not (tmp_path / "run").exists()


def test_sequential_needs_a_finished_run(tmp_path, capsys):
  with flagsaver.flagsaver(workdir=str(tmp_path), tasks=["digits"], sequential=True,
                           weights="none", alpha=0.35, image_size=32):
    with pytest.raises(SystemExit):
      entry.run_from_flags(["run"])
  assert "holds no finished multi-task run" in capsys.readouterr().err


def test_multires_flags_replace_the_configs_tasks(tmp_path):
  with flagsaver.flagsaver(workdir=str(tmp_path), config="mt_tiny_cpu",
                           dataset="digits", resolutions=["32", "40"]):
    built = config_flags.build_config(FLAGS)
  assert built.tasks == () and built.image_size is None
  assert built.resolutions == (32, 40) and built.alpha == 0.35


@pytest.mark.slow
def test_multires_run_shares_one_head_and_resumes(tmp_path):
  settings = dict(workdir=str(tmp_path / "mr"), weights=None, alpha=0.35,
                  dataset="digits", resolutions=(32, 40), patch="scale_bias",
                  batch_size=8, train_steps=2, eval_every=0, checkpoint_every=0,
                  summary_every=1)
  first = train.run(train.RunConfig(**settings))
  assert first["experiment"] == "multires" and first["steps"] == 2
  assert set(first["tasks"]) == {"digits@32", "digits@40"}
  head = np.load(tmp_path / "mr" / "patches" / "shared_head.npz")
  assert head["kernel"].shape == (1280, 10)
  # PreciseBN: each size's own 52 BN layers, on the digits at that size.
  assert first["bn_statistics"]["method"] == "precise_bn"
  assert first["bn_statistics"]["layers"] == 2 * 52
  for name in ("digits_32", "digits_40"):
    spec, arrays = patches.read_patch_file(str(tmp_path / "mr" / "patches" / f"{name}.safetensors"))
    assert not spec["has_head"] and not any(k.startswith("logits/") for k in arrays)
    assert spec["bn_statistics"]["method"] == "precise_bn"
  # The head is counted once in the system, once per model when separate.
  assert first["separate_models_params"] - first["system_params"] > 1281 * 10

  # The report reads it as one multires table with a column per resolution.
  run = collect.load_run(tmp_path / "mr" / "results.json", tmp_path)
  (grid,) = grids.build_multires_grids([run])
  assert grid.dataset == "digits" and grid.columns == [32, 40]

  second = train.run(train.RunConfig(**dict(settings, train_steps=3)))
  assert second["resumed_from_step"] == 2 and second["steps"] == 3
  assert second["optimizer_steps"] == 3
  saved = json.loads((tmp_path / "mr" / "results.json").read_text())
  assert saved["steps"] == 3
