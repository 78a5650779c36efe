"""LoRA patches through the runner: transfer, multi-task, sequential, exports.

A tiny MobileNetV2 (`helpers.tiny_base`: alpha 0.35, random weights saved to a file) on the shipped
mnist5k digits at 32 px and on `tfds.testing.mock_data`, as test_taps_runs.py.
"""


import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from k4p1 import patches
from k4p1.patches import lora
from helpers import model_checks
from helpers import tiny_base

pytestmark = pytest.mark.slow

SIZE = tiny_base.SIZE


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
  return tiny_base.save_tiny_base(tmp_path_factory.mktemp("lora"))


def config(workdir, weights, **overrides):
  from k4p1 import train  # pylint: disable=g-import-not-at-top
  settings = dict(workdir=str(workdir), dataset="mnist5k", weights=weights,
                  alpha=tiny_base.ALPHA, image_size=SIZE, patch="lora+scale_bias+logits",
                  batch_size=32, train_steps=12, eval_every=0,
                  checkpoint_every=0, summary_every=4, precise_bn_batches=2,
                  lora_rank=2, lora_alpha=4.0)
  settings.update(overrides)
  return train.RunConfig(**settings)


def factor_count(base, rank):
  return sum(lora.factor_size(l.kernel.shape, rank) for l in patches.leaf_layers(base)
             if isinstance(l, lora.LORA_CLASSES))


@pytest.fixture(scope="module")
def transfer_run(tmp_path_factory, weights):
  from k4p1 import train  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp("lora_transfer") / "run"
  return workdir, train.run(config(workdir, weights, export_tflite=True))


def test_transfer_run_records_and_trains_only_the_factors(transfer_run, weights):
  workdir, results = transfer_run
  base = tiny_base.fresh_base(weights)
  entry = results["tasks"]["mnist5k"]
  assert entry["lora"]["rank"] == 2 and entry["lora"]["alpha"] == 4.0
  assert entry["lora"]["layers"] == 35
  assert entry["lora"]["factor_params"] == factor_count(base, 2)
  model = patches.load_patch(base, str(workdir / "patches" / "mnist5k.safetensors"))
  assert results["params"] == patches.count_params(model)
  record, arrays = patches.read_patch_file(workdir / "patches" / "mnist5k.safetensors")
  assert (record["lora_rank"], record["lora_alpha"]) == (2, 4.0)
  # Strict fingerprint: the shared weights are the file's, bit for bit.
  before = tiny_base.fresh_base(weights).get_weights()
  for a, b in zip(before, base.get_weights()):
    np.testing.assert_array_equal(a, b)
  assert any(np.any(a) for k, a in arrays.items() if k.endswith("/lora_b"))
  assert "lora_rank" in results["config"]


def test_transfer_tflite_merges_the_factors(transfer_run, weights):
  workdir, results = transfer_run
  model = patches.load_patch(tiny_base.fresh_base(weights),
                             str(workdir / "patches" / "mnist5k.safetensors"))
  images = np.random.default_rng(0).uniform(-1, 1, (3, SIZE, SIZE, 3)).astype("float32")
  model_checks.assert_close(patches.run_tflite(str(workdir / results["tflite_file"]), images),
                            model(images).numpy())


def test_lora_behind_taps_gates_through_the_runner(tmp_path, weights):
  from k4p1 import train  # pylint: disable=g-import-not-at-top
  results = train.run(config(tmp_path / "lt", weights, patch="lora+taps+logits",
                             train_steps=6, taps_lambda=50.0,
                             taps_warmup_epochs=0.0))
  task = results["tasks"]["mnist5k"]
  assert task["taps"]["gated_layers"] == 52 and task["lora"]["layers"] == 35
  assert results["train"]["train/penalty/taps/mnist5k"] > 0


def test_multitask_and_sequential_lora_on_mock_data(tmp_path, weights):
  from k4p1 import train  # pylint: disable=g-import-not-at-top
  workdir = tmp_path / "mt"
  settings = dict(dataset=None, tasks=("cifar10", "mnist5k:0-4"),
                  image_sizes=(SIZE, SIZE), train_steps=4, export_tflite=True)
  images = np.random.default_rng(1).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype("float32")
  with tfds.testing.mock_data(num_examples=8):
    results = train.run(config(workdir, weights, **settings))
    base = tiny_base.fresh_base(weights)
    task_models = [patches.load_patch(base, str(workdir / "patches" / f"{n}.safetensors"))
                   for n in ("cifar10", "mnist5k_0-4")]
    for model, task in zip(task_models, results["tasks"].values()):
      assert task["lora"]["layers"] == 35
    # The shared base once, plus each task's unmerged patch.
    counts = [patches.count_params(m) for m in task_models]
    assert results["system_params"] == counts[0]["shared"] + sum(
        c["patch_stored"] for c in counts)
    export = tf.saved_model.load(str(workdir / "export"))
    before = export.serve(tf.constant(images), tf.constant([0, 1], tf.int32)).numpy()
    served = patches.LiteRTModel(str(workdir / results["tflite_file"]))
    for task_id, model in enumerate(task_models):
      expected = model(images).numpy()
      model_checks.assert_close(served.predict(images, task=task_id), expected)
      # The tolerance of the task's whole batch, as for the LiteRT file.
      scale = max(float(np.abs(expected).max()), 1.0)
      np.testing.assert_allclose(before[task_id, :expected.shape[1]], expected[task_id],
                                 atol=1e-4 * scale, rtol=1e-4)
    # A new task at another rank: the K-task LiteRT file pads its factors.
    seq = train.run(config(workdir, weights, dataset=None, tasks=("mnist5k:5-9",),
                           image_sizes=(SIZE,), train_steps=4, sequential=True,
                           lora_rank=3, export_tflite=True))
  assert seq["earlier_tasks_unchanged"]
  assert seq["tasks"]["mnist5k_5-9"]["lora"]["rank"] == 3
  task_models.append(patches.load_patch(
      base, str(workdir / "patches" / "mnist5k_5-9.safetensors")))
  served = patches.LiteRTModel(str(workdir / "tflite" / "tasks.tflite"))
  assert served.tasks == ["cifar10", "mnist5k_0-4", "mnist5k_5-9"]
  for task_id, model in enumerate(task_models):
    model_checks.assert_close(served.predict(images, task=task_id), model(images).numpy())
  tiny_base.assert_export_kept_earlier_tasks(workdir, images, before, "mnist5k_5-9")
