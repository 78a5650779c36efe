"""Tests of the LiteRT (.tflite) files of task models and of K-task systems.

Tiny MobileNetV2 (alpha 0.35, 32 px); each task's patch is perturbed away
from the base (BN gammas, betas, moving statistics, depthwise kernels, head)
so that serving the wrong task's patch would show. Each conversion takes
~10 s, so the files are written once per module.
"""

import json
import os
import pathlib
import sys

import numpy as np
import pytest
import tensorflow as tf

from k4p1 import models
from k4p1 import patches
from k4p1 import paths
from k4p1 import train
from k4p1.patches import litert
from k4p1.train import build
from k4p1.train import outputs
from test_patches_core import images
from test_patches_core import tiny_base

# Results depend on the CPU kernels (oneDNN or Eigen): .ci/run runs these
# again with the other family (conftest.py, `kernels`).
pytestmark = pytest.mark.kernels

# (task, spec, classes): different specs and class counts in one file.
TASKS = (("a", "scale_bias+logits", 3), ("b", "scale_bias+depthwise+logits", 5),
         ("c", "logits", 2))


def perturb(model, seed):
  """Moves every patch variable, so that each task computes its own function."""
  rng = np.random.RandomState(seed)
  for variable in patches.patch_variables(model):
    value = variable.numpy()
    if "variance" in variable.path:
      value = value * rng.uniform(0.5, 1.5, value.shape)
    else:
      value = value + rng.normal(0, 0.1, value.shape) * (np.abs(value).mean() + 0.1)
    variable.assign(value.astype("float32"))


def keras_logits(model, x):
  return model(x, training=False).numpy()


def assert_close(actual, expected):
  # Converted graphs fuse and reorder float32 ops: ~1e-4 on logits of ~10.
  np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def system(tmp_path_factory):
  base = tiny_base()
  task_models = []
  for seed, (task, spec, classes) in enumerate(TASKS):
    task_models.append(patches.apply_patch(base, spec, task=task,
                                           num_classes=classes))
    perturb(task_models[-1], seed)
  root = tmp_path_factory.mktemp("litert")
  files = {"task": str(root / "b.tflite"), "tasks": str(root / "tasks.tflite")}
  litert.export_task(task_models[1], files["task"])
  litert.export_multitask(task_models, files["tasks"])
  return {"base": base, "models": task_models, "files": files, "root": root}


def test_task_file_matches_the_keras_model(system):
  model, path = system["models"][1], system["files"]["task"]
  x = images(6)
  assert_close(litert.run(path, x), keras_logits(model, x))
  assert_close(patches.run_tflite(path, x, task="b", batch_size=4),
               keras_logits(model, x))
  metadata = litert.read_metadata(path)
  assert metadata["tasks"] == ["b"] and metadata["num_classes"] == [5]
  assert metadata["image_size"] == [32, 32] and not metadata["task_id_input"]
  assert metadata["quantization"] == "none"


def test_multitask_file_serves_every_task_like_its_keras_model(system):
  x = images(5, seed=3)
  served = litert.LiteRTModel(system["files"]["tasks"])
  assert served.tasks == ["a", "b", "c"]
  outputs = [keras_logits(m, x) for m in system["models"]]
  for task_id, (model, expected) in enumerate(zip(system["models"], outputs)):
    assert_close(served.predict(x, task=model.name), expected)
    assert_close(served.predict(x, task=task_id), expected)
  # The tasks really differ: a routing error would not pass the checks above.
  assert np.abs(outputs[0] - outputs[1][:, :3]).max() > 0.1
  # Padded logits, as the SavedModel serves them.
  runner = served._interpreter.get_signature_runner(litert.SIGNATURE)  # pylint: disable=protected-access
  raw = runner(images=x, task_id=np.array(2, np.int32))["logits"]
  assert raw.shape == (5, 5) and np.all(raw[:, 2:] == litert.PAD_LOGIT)


def test_tf_lite_interpreter_is_the_fallback(system, monkeypatch):
  monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # Not installed.
  assert litert.interpreter_class() is tf.lite.Interpreter
  x = images(3, seed=4)
  assert_close(litert.run(system["files"]["tasks"], x, task="a"),
               keras_logits(system["models"][0], x))


def test_shared_weights_are_stored_once(system):
  """3 tasks cost one base plus 3 patches, far from 3 task files."""
  one, three = (os.path.getsize(system["files"][k]) for k in ("task", "tasks"))
  base_bytes = 4 * sum(int(np.prod(v.shape)) for v in system["base"].weights)
  assert base_bytes > 1e6
  assert three < one + 0.5 * base_bytes


def test_int8_quantization_runs_and_shrinks_the_file(system):
  task_models, root = system["models"], system["root"]
  x = images(4, seed=5)
  dynamic = str(root / "tasks_dynamic.tflite")
  litert.export_multitask(task_models, dynamic, quantization="dynamic_int8")
  assert os.path.getsize(dynamic) < 0.6 * os.path.getsize(system["files"]["tasks"])
  assert litert.read_metadata(dynamic)["quantization"] == "dynamic_int8"
  logits = litert.run(dynamic, x, task="b")
  assert logits.shape == (4, 5) and np.all(np.isfinite(logits))
  full = str(root / "b_int8.tflite")
  litert.export_task(task_models[1], full, quantization="int8",
                     representative_images=images(16, seed=6))
  assert os.path.getsize(full) < 0.6 * os.path.getsize(system["files"]["task"])
  logits = litert.run(full, x)
  assert logits.shape == (4, 5) and np.all(np.isfinite(logits))


def test_bad_arguments_give_clear_errors(system, tmp_path):
  task_models, path = system["models"], str(tmp_path / "x.tflite")
  with pytest.raises(ValueError, match=r"Unknown quantization 'int4'.*none, float16"):
    litert.export_task(task_models[0], path, quantization="int4")
  with pytest.raises(ValueError, match="representative_images"):
    litert.export_multitask(task_models, path, quantization="int8")
  with pytest.raises(ValueError, match=r"one array per task \(3\)"):
    litert.export_multitask(task_models, path, quantization="int8",
                            representative_images=[images(2)])
  with pytest.raises(ValueError, match="'int8' .* does not suit a K-task file"):
    litert.export_multitask(task_models, path, quantization="int8",
                            representative_images=[images(2)] * 3)
  other = patches.apply_patch(models.build_backbone(
      "mobilenet_v2", 32, weights=None, alpha=0.35), "logits", task="d",
                              num_classes=2)
  with pytest.raises(ValueError, match="2 different base models"):
    litert.export_multitask([task_models[0], other], path)
  with pytest.raises(ValueError, match="not made by k4p1.patches.apply_patch"):
    litert.export_task(tf.keras.Sequential(), path)
  assert not os.listdir(tmp_path)
  served = litert.LiteRTModel(system["files"]["tasks"])
  with pytest.raises(ValueError, match=r"Unknown task 'z'.*valid choices: a, b, c"):
    served.predict(images(1), task="z")
  with pytest.raises(ValueError, match="Unknown task 3"):
    served.predict(images(1), task=3)
  with pytest.raises(ValueError, match="Unknown task None"):
    served.predict(images(1))
  with pytest.raises(ValueError, match=r"takes \[N, 32, 32, 3\]"):
    served.predict(images(1, size=48), task="a")
  with pytest.raises(ValueError, match="has no 'k4p1' metadata"):
    litert.read_metadata(path_without_metadata(tmp_path))


def path_without_metadata(tmp_path):
  module = tf.Module()
  module.f = tf.function(lambda x: {"y": x + 1.0},
                         input_signature=[tf.TensorSpec([1], tf.float32)])
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [module.f.get_concrete_function()], module)
  path = tmp_path / "plain.tflite"
  path.write_bytes(converter.convert())
  return str(path)


def test_a_failed_export_leaves_no_file(system, tmp_path, monkeypatch):
  path = tmp_path / "b.tflite"
  path.write_bytes(b"previous")
  blob = pathlib.Path(path_without_metadata(tmp_path)).read_bytes()
  os.remove(tmp_path / "plain.tflite")

  def fail(*args):
    raise RuntimeError("conversion failed")
  monkeypatch.setattr(litert, "_convert", fail)
  with pytest.raises(RuntimeError, match="conversion failed"):
    litert.export_task(system["models"][1], str(path))
  monkeypatch.setattr(litert, "_convert", lambda *args: blob)

  def full_disk(fd):
    raise OSError("disk full")
  monkeypatch.setattr(os, "fsync", full_disk)  # Mid-write, after the bytes.
  with pytest.raises(OSError, match="disk full"):
    litert.export_task(system["models"][1], str(path))
  with pytest.raises(OSError, match="disk full"):
    litert.export_multitask(system["models"], str(tmp_path / "new.tflite"))
  assert os.listdir(tmp_path) == ["b.tflite"] and path.read_bytes() == b"previous"


@pytest.mark.slow
def test_transfer_run_writes_a_tflite_file_of_its_model(tmp_path):
  base = models.build_backbone("mobilenet_v2", 32, weights=None, alpha=0.35)
  weights = str(tmp_path / "base.weights.h5")
  base.save_weights(weights)
  workdir = tmp_path / "run"
  results = train.run(train.RunConfig(
      workdir=str(workdir), dataset="mnist5k:0-2", weights=weights, alpha=0.35,
      image_size=32, patch="scale_bias+logits", batch_size=8, train_steps=2,
      eval_every=0, precise_bn_batches=2, export_tflite=True), command="test")
  path = workdir / "tflite" / "mnist5k_0-2.tflite"
  assert results["tflite_file"] == os.path.join("tflite", "mnist5k_0-2.tflite")
  assert results["tflite_file_bytes"] == path.stat().st_size
  assert json.loads((workdir / "results.json").read_text())["tflite_quantization"] == "none"
  fresh = models.build_backbone("mobilenet_v2", 32, weights=weights, alpha=0.35)
  model = patches.load_patch(fresh, str(workdir / "patches" / "mnist5k_0-2.safetensors"))
  x = images(4, seed=9)
  assert_close(litert.run(str(path), x), keras_logits(model, x))


def test_run_config_rejects_an_unknown_quantization(tmp_path):
  config = train.RunConfig(workdir=str(tmp_path), dataset="mnist5k",
                           weights=None, export_tflite=True,
                           tflite_quantization="int4")
  with pytest.raises(ValueError, match="Unknown tflite_quantization 'int4'"):
    train.resolve(config)


def test_multitask_run_writes_one_file_for_every_task(tmp_path):
  """The K-task branch of a run's outputs (dynamic-range int8)."""
  plan = train.resolve(train.RunConfig(
      workdir=str(tmp_path), tasks=("mnist5k:0-1", "mnist5k:2-4"), weights=None,
      alpha=0.35, image_size=32, export_tflite=True,
      tflite_quantization="dynamic_int8"))
  run_models = build.build_models(plan)
  for seed, model in enumerate(run_models.task_models):
    perturb(model, seed)
  fields = outputs._write_tflite(plan, run_models.task_models)  # pylint: disable=protected-access
  path = tmp_path / "tflite" / "tasks.tflite"
  assert fields == {"tflite_file": os.path.join("tflite", "tasks.tflite"),
                    "tflite_file_bytes": path.stat().st_size,
                    "tflite_quantization": "dynamic_int8"}
  metadata = litert.read_metadata(str(path))
  assert metadata["tasks"] == ["mnist5k_0-1", "mnist5k_2-4"]
  assert metadata["num_classes"] == [2, 3]
  logits = litert.run(str(path), images(3), task="mnist5k_2-4")
  assert logits.shape == (3, 3) and np.all(np.isfinite(logits))
  with pytest.raises(ValueError, match="'int8' is for transfer runs"):
    train.resolve(plan.config.replace(tflite_quantization="int8"))


def test_transfer_int8_calibrates_on_the_training_split(tmp_path, monkeypatch):
  plan = train.resolve(train.RunConfig(
      workdir=str(tmp_path), dataset="mnist5k:0-2", weights=None, alpha=0.35,
      image_size=32, export_tflite=True, tflite_quantization="int8"))
  calls = []
  monkeypatch.setattr(litert, "export_task",
                      lambda *args: calls.append(args) or {})
  monkeypatch.setattr(paths, "size", lambda path: 1)
  outputs._write_tflite(plan, ["model"])  # pylint: disable=protected-access
  (_, path, quantization, calibration, size), = calls
  assert path.endswith(os.path.join("tflite", "mnist5k_0-2.tflite"))
  assert quantization == "int8" and size == 32
  assert calibration.shape == (outputs.CALIBRATION_IMAGES, 32, 32, 3)
