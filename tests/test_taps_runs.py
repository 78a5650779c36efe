"""TAPS patches through the runner: transfer, multi-task, sequential, exports.

A tiny MobileNetV2 (`helpers.tiny_base`: alpha 0.35, random weights saved to a file) on the shipped
mnist5k digits at 32 px and on `tfds.testing.mock_data`.
"""


import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from k4p1 import patches
from k4p1 import train
from helpers import model_checks
from helpers import tiny_base
from helpers.summaries import event_tags

pytestmark = pytest.mark.slow

SIZE = tiny_base.SIZE


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
  return tiny_base.save_tiny_base(tmp_path_factory.mktemp("taps"))


def base_arrays(path):
  return [w.copy() for w in tiny_base.fresh_base(path).get_weights()]


def config(workdir, weights, **overrides):
  settings = dict(workdir=str(workdir), dataset="mnist5k", weights=weights,
                  alpha=tiny_base.ALPHA, image_size=SIZE, patch="taps+scale_bias+logits",
                  batch_size=32, train_steps=25, eval_every=0,
                  checkpoint_every=0, summary_every=5, precise_bn_batches=4,
                  taps_warmup_epochs=0.0)
  settings.update(overrides)
  return train.RunConfig(**settings)


@pytest.fixture(scope="module")
def transfer_runs(tmp_path_factory, weights):
  root = tmp_path_factory.mktemp("taps_transfer")
  return {lam: (root / str(lam), train.run(config(
      root / str(lam), weights, taps_lambda=lam, export_tflite=True)))
          for lam in (0.0, 50.0)}


def test_large_lambda_closes_gates_and_shrinks_the_patch(transfer_runs):
  (_, free), (sparse_dir, sparse) = transfer_runs[0.0], transfer_runs[50.0]
  free_taps, sparse_taps = free["tasks"]["mnist5k"]["taps"], sparse["tasks"]["mnist5k"]["taps"]
  # Without the penalty only the task loss moves the scores.
  assert free_taps["open_fraction"] >= 0.5
  assert sparse_taps["open_fraction"] < 0.25
  assert sparse_taps["gated_layers"] == 52
  assert (free["params"]["patch_stored"] - sparse["params"]["patch_stored"] ==
          free_taps["open_delta_params"] - sparse_taps["open_delta_params"])
  assert sparse["patch_file_bytes"] < free["patch_file_bytes"] / 2
  assert sparse["train"]["train/penalty/taps/mnist5k"] > 0
  assert "train/penalty/taps/mnist5k" not in free["train"] or (
      free["train"]["train/penalty/taps/mnist5k"] == 0)
  tags = event_tags(sparse_dir / "tensorboard")
  assert "taps/mnist5k/open_fraction" in tags
  assert "taps_scores/mnist5k/Conv1" in tags


def test_only_patch_variables_moved(transfer_runs, weights):
  workdir, _ = transfer_runs[50.0]
  base = tiny_base.fresh_base(weights)
  model = patches.load_patch(base, str(workdir / "patches" / "mnist5k.safetensors"))
  # The patch loaded onto a fresh base (strict fingerprint: shared weights
  # equal the file's) and the base's arrays are the saved ones, bit for bit.
  for before, after in zip(base_arrays(weights), base.get_weights()):
    np.testing.assert_array_equal(before, after)
  moved = [v for v in patches.named_patch_variables(model).values()
           if v.name in ("delta", "score")]
  assert any(np.any(v.numpy() != 0.15) for v in moved if v.name == "score")


def test_tflite_export_bakes_the_gates(transfer_runs, weights):
  workdir, results = transfer_runs[50.0]
  base = tiny_base.fresh_base(weights)
  model = patches.load_patch(base, str(workdir / "patches" / "mnist5k.safetensors"))
  images = np.random.default_rng(0).uniform(-1, 1, (3, SIZE, SIZE, 3)).astype("float32")
  model_checks.assert_close(patches.run_tflite(str(workdir / results["tflite_file"]), images),
                            model(images).numpy())


def test_multitask_and_sequential_taps_on_mock_data(tmp_path, weights):
  workdir = tmp_path / "mt"
  settings = dict(dataset=None, tasks=("cifar10", "mnist5k:0-4"),
                  image_sizes=(SIZE, SIZE), train_steps=4, taps_lambda=1.0)
  with tfds.testing.mock_data(num_examples=8):
    results = train.run(config(workdir, weights, **settings))
    assert set(results["tasks"]) == {"cifar10", "mnist5k_0-4"}
    for task in results["tasks"].values():
      assert task["taps"]["gated_layers"] == 52
    assert {"train/penalty/taps/cifar10", "train/penalty/taps/mnist5k_0-4"} <= set(
        results["train"])
    export = tf.saved_model.load(str(workdir / "export"))
    images = np.random.default_rng(1).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype("float32")
    before = export.serve(tf.constant(images), tf.constant([0, 1], tf.int32)).numpy()
    seq = train.run(config(workdir, weights, dataset=None, tasks=("mnist5k:5-9",),
                           image_sizes=(SIZE,), train_steps=4, sequential=True))
  assert seq["earlier_tasks_unchanged"]
  assert seq["tasks"]["mnist5k_5-9"]["taps"]["gated_layers"] == 52
  tiny_base.assert_export_kept_earlier_tasks(workdir, images, before, "mnist5k_5-9")
