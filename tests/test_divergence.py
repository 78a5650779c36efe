"""A run that fails to train (runaway loss, chance accuracy) says so: log, results.json, table."""

import json

import numpy as np
import pytest
import tensorflow as tf

from experiments import run as run_entry
from k4p1.train import loop
from k4p1.train import progress


def _loop(losses, summary_every=2):
  """Runs the loop over a fake step whose per-example loss follows `losses`."""
  step = tf.Variable(0, dtype=tf.int64)

  def train_step():
    loss = losses[int(step.numpy())]
    step.assign_add(1)
    return {"t/loss_sum": tf.constant(4.0 * loss), "t/count": tf.constant(4.0),
            "t/correct": tf.constant(1.0), "weight_decay": tf.constant(0.0)}

  return loop.run_training_loop(
      train_step=train_step, task_names=["t"], step=step, total_steps=len(losses),
      learning_rate_fn=lambda _: 0.1, save_checkpoint=lambda: None, checkpoint_every=0,
      evaluate=lambda _: {}, eval_every=0, write_scalars=lambda *_: None,
      summary_every=summary_every)


def _alarm(losses, accuracy=0.5, chance=0.1, summary_every=2):
  result = _loop(losses, summary_every)
  metrics = dict(result.train_metrics, **{"train/accuracy": accuracy})
  return progress.training_alarm(result.first_loss, metrics, chance)


def test_a_loss_that_runs_away_is_flagged_with_its_first_and_last_windows():
  result = _loop([2.3, 2.1, 5.0, 40.0, 300.0, 632.0])
  assert result.first_loss == pytest.approx(2.2)
  assert _alarm([2.3, 2.1, 5.0, 40.0, 300.0, 632.0]) == {
      "reason": "runaway loss", "first_loss": pytest.approx(2.2),
      "last_loss": pytest.approx(466.0), "last_accuracy": 0.5}


def test_a_training_accuracy_at_chance_is_flagged_even_when_the_loss_is_flat():
  # results/cpu_scale_lora: collapsed to a constant output, cross-entropy ln 10.
  alarm = _alarm([2.3, 2.3, 2.31, 2.30, 2.30, 2.30], accuracy=0.0985)
  assert alarm["reason"] == "chance accuracy" and alarm["last_accuracy"] == 0.0985
  assert _alarm([2.3, 2.3, 2.31, 2.30, 2.30, 2.30], accuracy=0.16) is None
  # Two classes: within 5 points of chance; 1,000: within 1.5x chance.
  assert _alarm([2.3] * 6, accuracy=0.6, chance=0.5) is None
  assert _alarm([2.3] * 6, accuracy=0.54, chance=0.5)["reason"] == "chance accuracy"
  assert _alarm([2.3] * 6, accuracy=0.002, chance=0.001) is None
  assert _alarm([2.3] * 6, accuracy=0.0014, chance=0.001)["reason"] == "chance accuracy"


@pytest.mark.parametrize("losses", [
    [2.3, 2.0, 1.5, 1.0, 0.8, 0.7],   # Learning.
    [2.3, 2.3, 2.4, 2.5, 2.6, 2.4],   # Noise: not a runaway.
    [2.3, 2.3, 2.3, 2.3, 6.8, 6.8]])  # Worse, but under 3x.
def test_a_loss_that_does_not_run_away_is_not_flagged(losses):
  assert _alarm(losses) is None


def test_one_summary_window_cannot_be_compared_with_itself():
  assert _loop([2.3, 900.0], summary_every=2).first_loss == pytest.approx(451.15)
  assert _alarm([2.3, 900.0]) is None
  assert progress.training_alarm(None, {}, 0.1) is None


def test_a_non_finite_loss_still_ends_the_run():
  with pytest.raises(FloatingPointError, match="lower the learning rate"):
    _loop([2.3, np.nan, 1.0, 1.0])


def test_the_runs_table_says_training_failed():
  results = {"experiment": "transfer", "model": "mobilenet_v2", "patch": "logits+lora",
             "steps": 300, "params": {"patch_trainable": 1, "patch_stored": 1},
             "tasks": {"t": {"dataset": "mnistm5k", "accuracy": 0.1, "examples": 10}},
             "training_alarm": {"reason": "runaway loss", "first_loss": 2.31,
                                "last_loss": 632.2, "last_accuracy": 0.0999}}
  table = run_entry.format_run_table(results)
  assert ("WARNING: training failed (runaway loss: cross-entropy 632, training accuracy "
          "0.100 at the end)") in table
  del results["training_alarm"]
  assert "WARNING" not in run_entry.format_run_table(results)


def test_a_failed_run_records_it_in_results_json(tmp_path, monkeypatch):
  from k4p1 import train  # pylint: disable=g-import-not-at-top
  # Every loss now counts as a runaway: this checks the wiring, not the rule.
  monkeypatch.setattr(progress, "DIVERGED_FACTOR", 0.0)
  config = train.RunConfig(workdir=str(tmp_path / "run"), dataset="mnist5k", weights=None,
                           alpha=0.35, image_size=32, patch="logits", batch_size=8,
                           train_steps=4, summary_every=1, eval_every=0, checkpoint_every=0)
  results = train.run(config)
  alarm = results["training_alarm"]
  assert alarm["reason"] == "runaway loss" and 0 < alarm["first_loss"] and 0 < alarm["last_loss"]
  assert 0 <= alarm["last_accuracy"] <= 1
  on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
  assert on_disk["training_alarm"] == alarm
