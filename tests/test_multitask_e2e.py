"""End-to-end multi-task runs of `experiments/run.py` on `tfds.testing.mock_data`.

Three tasks with different class counts and image sizes (cifar10 at 32 px,
cifar100 at 40 px, oxford_flowers102 at 48 px) on one tiny MobileNetV2 (alpha
0.35, random weights saved to a file, so a test can rebuild the same base):
multi-task training with a frozen and with a trained shared base, the serving
export against the per-task models, and a sequential addition.
"""

import hashlib
import json
import shutil

from absl import flags
from absl.testing import flagsaver
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from experiments import run as entry
from k4p1 import data
from k4p1 import models
from k4p1 import patches
from helpers.summaries import event_tags

FLAGS = flags.FLAGS
NUM_EXAMPLES = 6
DATASETS = ("cifar10", "cifar100", "oxford_flowers102")
SIZES = (32, 40, 48)
CLASSES = {"cifar10": 10, "cifar100": 100, "oxford_flowers102": 102}


pytestmark = pytest.mark.usefixtures("parsed_flags")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  root = tmp_path_factory.mktemp("mt")
  keras.utils.set_random_seed(0)
  base = models.build_backbone("mobilenet_v2", None, weights=None, alpha=0.35)
  weights = str(root / "base.weights.h5")
  base.save_weights(weights)
  return {"root": root, "weights": weights}


def run_main(env, workdir, results_dir=None, **overrides):
  settings = dict(
      workdir=str(workdir), model="mobilenet_v2", weights=env["weights"],
      alpha=0.35, tasks=list(DATASETS), image_sizes=[str(s) for s in SIZES],
      patch="scale_bias+logits", batch_size=4,
      train_steps=2, eval_every=0, checkpoint_every=0, summary_every=1)
  settings.update(overrides)
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES):
    with flagsaver.flagsaver(**settings):
      entry.run_from_flags(["run"])
  return json.loads(((results_dir or workdir) / "results.json").read_text())


def fresh_base(path):
  return models.build_backbone("mobilenet_v2", None, weights=path, alpha=0.35)


def base_arrays(path):
  return [w.copy() for w in fresh_base(path).get_weights()]


def sha(path):
  return hashlib.sha256(open(path, "rb").read()).hexdigest()


def bn_arrays_moved(patch_file, base):
  """Whether any trained BN array (gamma/beta) of the patch differs from the base's."""
  _, arrays = patches.read_patch_file(patch_file)
  layers = {layer.name: layer for layer in patches.leaf_layers(base)}
  moved = []
  for key, value in arrays.items():
    layer, variable = key.split("/")
    if variable in ("gamma", "beta"):
      original = {v.name: v.numpy() for v in layers[layer].weights}[variable]
      moved.append(not np.array_equal(original, value))
  return any(moved)


@pytest.fixture(scope="module")
def frozen_run(env):
  workdir = env["root"] / "frozen"
  results = run_main(env, workdir, shared="frozen")
  return workdir, results


def test_frozen_multitask_run_writes_every_task_and_the_price(env, frozen_run):
  workdir, results = frozen_run
  names = [data.get_dataset_info(d).name for d in DATASETS]
  assert results["experiment"] == "multitask"
  assert results["steps"] == results["optimizer_steps"] == 2
  for name, size in zip(names, SIZES):
    task = results["tasks"][name]
    assert task["num_classes"] == CLASSES[name] and task["examples"] == NUM_EXAMPLES
    assert task["image_size"] == size and 0.0 <= task["accuracy"] <= 1.0
  # The price: the base once plus each stored patch, vs K whole models + heads.
  base = fresh_base(env["weights"])
  base_total = sum(int(np.prod(w.shape)) for w in base.weights)
  stored = 0
  for name in names:
    _, arrays = patches.read_patch_file(str(workdir / "patches" / f"{name}.safetensors"))
    stored += sum(int(np.prod(a.shape)) for a in arrays.values())
  patched_base_layers = stored - sum(1281 * c for c in CLASSES.values())
  assert results["params"]["patch_stored"] == stored
  # Shared = the base minus the layers every task replaced (its BN layers).
  assert results["system_params"] == stored + results["params"]["shared"]
  assert results["params"]["shared"] == base_total - patched_base_layers // 3
  assert results["separate_models_params"] == sum(base_total + 1281 * c
                                                 for c in CLASSES.values())
  assert results["system_params"] < results["separate_models_params"] / 2
  tags = event_tags(str(workdir / "tensorboard"))
  assert {f"eval/{n}/accuracy" for n in names} <= tags
  assert {f"train/{n}/loss" for n in names} <= tags
  manifest = json.loads((workdir / "tasks.json").read_text())
  assert [t["name"] for t in manifest["tasks"]] == names


def test_frozen_shared_variables_are_bit_identical_and_patches_moved(env, frozen_run):
  workdir, results = frozen_run
  # PreciseBN over each task's own 52 BN layers, each on its own data.
  assert results["bn_statistics"]["method"] == "precise_bn"
  assert results["bn_statistics"]["layers"] == 52 * len(DATASETS)
  # bn_init re-parameterised each task's own BN layers, never the shared base
  # (its arrays are compared bit for bit below).
  assert results["bn_init"]["layers"] == 52 * len(DATASETS)
  assert results["bn_init"]["shared_layers"] == 0
  before = base_arrays(env["weights"])
  after = base_arrays(str(workdir / "backbone.weights.h5"))
  assert all(np.array_equal(a, b) for a, b in zip(before, after))
  original = fresh_base(env["weights"])
  for name in DATASETS:
    path = str(workdir / "patches" / f"{name}.safetensors")
    patches.load_patch(original, path, strict=True)  # Same shared bytes.
    assert bn_arrays_moved(path, original), name


def mixed_batch(size, num_tasks, per_task=3):
  rng = np.random.RandomState(1)
  ids = np.tile(np.arange(num_tasks, dtype="int32"), per_task)
  rng.shuffle(ids)
  images = rng.uniform(-1, 1, (len(ids), size, size, 3)).astype("float32")
  return images, ids


def test_export_serves_a_mixed_batch_like_the_task_models(frozen_run):
  workdir, _ = frozen_run
  manifest = json.loads((workdir / "tasks.json").read_text())
  size = manifest["export_image_size"]
  assert size == max(SIZES)
  images, ids = mixed_batch(size, len(DATASETS))
  served = tf.saved_model.load(str(workdir / "export"))
  logits = served.serve(tf.constant(images), tf.constant(ids)).numpy()
  base = fresh_base(str(workdir / "backbone.weights.h5"))
  for task_id, entry in enumerate(manifest["tasks"]):
    model = patches.load_patch(base, str(workdir / entry["patch_file"]))
    rows = np.flatnonzero(ids == task_id)
    expected = model(images[rows], training=False).numpy()
    classes = entry["num_classes"]
    # The SavedModel fuses conv + BN: float32 rounding only, relative to the
    # logits' scale (PreciseBN statistics make this random base's logits O(10)).
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(logits[rows, :classes], expected, rtol=1e-4,
                               atol=1e-4 * max(scale, 1.0))
    assert np.all(logits[rows, classes:] == patches.PAD_LOGIT)


@pytest.mark.slow
def test_sequential_task_leaves_earlier_tasks_bit_identical(env, frozen_run):
  workdir, _ = frozen_run
  size = json.loads((workdir / "tasks.json").read_text())["export_image_size"]
  images, ids = mixed_batch(size, len(DATASETS))
  earlier = tf.saved_model.load(str(workdir / "export"))  # Kept alive: it owns
  before = earlier.serve(tf.constant(images), tf.constant(ids)).numpy()  # its variables.
  hashes = {p: sha(workdir / p) for p in
            ["backbone.weights.h5"] + [f"patches/{d}.safetensors" for d in DATASETS]}
  shutil.copytree(workdir / "export", workdir.parent / "export_before")

  multitask_results = (workdir / "results.json").read_text()
  run_dir = workdir / "sequential" / "mnist5k_0-4"
  results = run_main(env, workdir, results_dir=run_dir, sequential=True,
                     tasks=["mnist5k:0-4"], image_sizes=["32"],
                     task_sampling="round_robin")
  assert (workdir / "results.json").read_text() == multitask_results
  assert results["experiment"] == "sequential" and results["earlier_tasks_unchanged"]
  assert set(results["tasks"]) == set(DATASETS) | {"mnist5k_0-4"}
  assert results["tasks"]["mnist5k_0-4"]["trained_in_this_run"]
  assert not results["tasks"]["cifar10"]["trained_in_this_run"]
  assert results["task_steps"] == {"mnist5k_0-4": 2}
  # PreciseBN touched the new task's BN layers only (the hashes below).
  assert results["bn_statistics"]["method"] == "precise_bn"
  assert results["bn_statistics"]["layers"] == 52
  assert results["bn_init"]["method"] == "preserve"
  assert results["bn_init"]["layers"] == 52  # The new task's only.
  assert {p: sha(workdir / p) for p in hashes} == hashes
  manifest = json.loads((workdir / "tasks.json").read_text())
  assert [t["name"] for t in manifest["tasks"]][-1] == "mnist5k_0-4"
  served = tf.saved_model.load(str(workdir / "export"))
  # Every task id in the batch: the export fails on a task with no example
  # (empty batch through a conv layer on CPU; reported to the lead).
  extra, _ = mixed_batch(size, 1, per_task=2)
  after = served.serve(tf.constant(np.concatenate([images, extra])),
                       tf.constant(np.concatenate([ids, [3, 3]]).astype("int32"))).numpy()
  # Earlier task ids serve exactly what they served before (new padding aside).
  np.testing.assert_array_equal(after[:len(ids), :before.shape[1]], before)
  assert [n.decode() for n in served.task_names().numpy()][-1] == "mnist5k_0-4"


@pytest.mark.slow
def test_trained_shared_base_moves_with_every_patch(env):
  workdir = env["root"] / "trained"
  # One replica: mirrored multi-task runs are covered by test_multi_worker
  # (and tracing K task steps per replica made this the suite's slowest test).
  results = run_main(env, workdir, shared="trained", task_sampling="round_robin",
                     train_steps=3)
  assert results["task_steps"] == {d: 1 for d in DATASETS}  # Round robin.
  before = base_arrays(env["weights"])
  after = base_arrays(str(workdir / "backbone.weights.h5"))
  assert any(not np.array_equal(a, b) for a, b in zip(before, after))
  original = fresh_base(env["weights"])
  for name in DATASETS:
    path = str(workdir / "patches" / f"{name}.safetensors")
    assert bn_arrays_moved(path, original), name
    with pytest.raises(patches.PatchMismatchError):
      patches.load_patch(original, path)  # The shared weights changed.
  # Trained parameters include the whole base, stored patches do not.
  assert results["params"]["patch_trainable"] > results["params"]["patch_stored"]
