"""A `mirrored` run on two logical CPUs matches a `default` run.

Same data (the offline digits), same global batch, same seed: a global batch is
split between the two replicas, and losses are scaled by the global batch, so
the runs should agree up to floating-point summation order. The backbone is
the ImageNet-derived extractor in ../shared/data, so the logits patch learns
something worth comparing (a random backbone's features are near zero).
"""

import pytest

from k4p1 import train

STEPS = 30


@pytest.fixture(scope="module")
def backbone_file(shared_data):
  return str(shared_data / "mobilenet_v2_1.0_160_dogs.h5")


def _run(strategy, workdir, weights, train_steps=STEPS, **overrides):
  return train.run(train.RunConfig(
      workdir=str(workdir), weights=weights, image_size=32, dataset="digits",
      patch="logits", batch_size=32, train_steps=train_steps, eval_every=0,
      checkpoint_every=0, strategy=strategy, seed=0, **overrides))


def test_mirrored_on_two_cpus_matches_default(tmp_path, backbone_file):
  default = _run("default", tmp_path / "default", backbone_file)
  mirrored = _run("mirrored", tmp_path / "mirrored", backbone_file)
  assert default["strategy"]["replicas"] == 1
  assert mirrored["strategy"]["replicas"] == 2
  accuracy = default["tasks"]["digits"]["accuracy"]
  assert accuracy > 0.3  # It learned: the comparison means something.
  assert mirrored["tasks"]["digits"]["accuracy"] == pytest.approx(accuracy, abs=0.01)
  assert mirrored["tasks"]["digits"]["examples"] == default["tasks"]["digits"]["examples"]
  assert mirrored["train"]["train/loss"] == pytest.approx(
      default["train"]["train/loss"], rel=1e-3)
  assert mirrored["optimizer_steps"] == default["optimizer_steps"] == STEPS


@pytest.mark.slow
def test_prefetch_to_device_does_not_change_a_mirrored_run(tmp_path, backbone_file):
  runs = [_run("mirrored", tmp_path / str(prefetch), backbone_file,
               train_steps=10, prefetch_to_device=prefetch)
          for prefetch in (True, False)]
  assert [r["config"]["prefetch_to_device"] for r in runs] == [True, False]
  assert runs[0]["train"]["train/loss"] == pytest.approx(
      runs[1]["train"]["train/loss"], rel=1e-5)
  assert runs[0]["tasks"]["digits"]["accuracy"] == pytest.approx(
      runs[1]["tasks"]["digits"]["accuracy"], abs=1e-6)
