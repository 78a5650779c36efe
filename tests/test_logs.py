"""Logs a person reads: no retracing warnings, a progress line, no TF chatter."""

import logging as std_logging
import os
import subprocess
import sys

from absl import logging
import keras
import numpy as np
import pytest
import tensorflow as tf

from experiments import logs
from k4p1 import eval as eval_lib
from k4p1 import tracing
from k4p1.train import progress

# Results depend on the CPU kernels (oneDNN or Eigen): .ci/run runs these
# again with the other family (conftest.py, `kernels`).
pytestmark = pytest.mark.kernels


def _tiny_model():
  inputs = keras.Input((8, 8, 3))
  x = keras.layers.Conv2D(4, 3)(inputs)
  x = keras.layers.BatchNormalization()(x)
  x = keras.layers.GlobalAveragePooling2D()(x)
  return keras.Model(inputs, keras.layers.Dense(3)(x))


def _eval_data():
  images = np.random.default_rng(0).random((20, 8, 8, 3)).astype(np.float32)
  return tf.data.Dataset.from_tensor_slices(
      (images, np.zeros(20, np.int32))).batch(8)


class _Records(std_logging.Handler):

  def __init__(self):
    super().__init__()
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


def test_one_eval_function_per_model_is_traced_once_and_never_warns():
  records = _Records()
  tf_logger = std_logging.getLogger("tensorflow")
  tf_logger.addHandler(records)
  try:
    # Seven models in one process: TensorFlow counts traces per code object,
    # so closures over each model's pass warned from the fifth model on.
    for _ in range(7):
      accuracy_fn = eval_lib.make_accuracy_fn(_tiny_model(), _eval_data())
      for _ in range(3):
        assert accuracy_fn()["examples"] == 20
  finally:
    tf_logger.removeHandler(records)
  assert not [m for m in records.messages if "retracing" in m], records.messages


def test_model_function_traces_once_per_input_signature():
  calls = []

  def double(x):
    calls.append(1)  # Runs at trace time only.
    return 2 * x

  fn = tracing.model_function(double)
  for _ in range(3):
    assert float(fn(tf.constant(2.0))) == 4.0
  fn(tf.constant([1.0, 2.0]))
  assert len(calls) == 2 and fn.experimental_get_tracing_count() == 2


def test_format_duration():
  assert progress.format_duration(45.4) == "45s"
  assert progress.format_duration(185) == "3m05s"
  assert progress.format_duration(7620) == "2h07m"


def _outputs(loss=1.0):
  return {"t/loss_sum": loss * 4, "t/count": 4.0, "t/correct": 2.0,
          "weight_decay": 0.0}


def test_progress_line_has_step_loss_accuracy_rate_and_time_left(monkeypatch):
  now = [100.0]
  monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
  lines = []
  monkeypatch.setattr(progress.logging, "info", lambda fmt, *a: lines.append(fmt % a))
  line_log = progress.ProgressLog(["t"], total_steps=10, every_secs=5.0,
                                  learning_rate_fn=lambda s: 0.01)
  now[0] = 102.0
  line_log.add(1, _outputs(), 2.0, timed=False)  # The first step: no line.
  for step in range(2, 5):
    now[0] += 2.0
    line_log.add(step, _outputs(), 0.5, timed=True)
  # Logged at step 3, 6 s after the last line: 8 images in 1 s of steps;
  # 2 steps in 4 s since the first (wall time), 7 steps left.
  assert lines == ["step 3/10: loss 1.0000, accuracy 0.5000, 8.0 images/sec, "
                   "14s left (learning rate 0.01)"], lines
  for step in range(5, 11):
    now[0] += 0.1
    line_log.add(step, _outputs(), 0.1, timed=True)
  assert len(lines) == 2 and lines[1].startswith("step 10/10: ")
  assert "left" not in lines[1]


def test_tensorflow_checkpoint_chatter_is_dropped_below_debug(tmp_path):
  logs.configure()
  records = _Records()
  tf_logger = std_logging.getLogger("tensorflow")
  tf_logger.addHandler(records)
  absl_logger = std_logging.getLogger("absl")  # TF's saver logs through it.
  absl_logger.addHandler(records)
  saved_verbosity, saved_level = logging.get_verbosity(), tf_logger.level
  tf_logger.setLevel(std_logging.DEBUG)
  checkpoint = tf.train.Checkpoint(v=tf.Variable(1.0))
  try:
    logging.set_verbosity(logging.INFO)
    checkpoint.save(str(tmp_path / "a"))
    tf_logger.warning("Sharding callback duration as a warning")
    assert not [m for m in records.messages if m.startswith("Sharding callback")
                and "warning" not in m], records.messages
    assert records.messages[-1] == "Sharding callback duration as a warning"
    logging.set_verbosity(logging.DEBUG)  # --verbosity=1 shows everything.
    checkpoint.save(str(tmp_path / "b"))
    assert any(m.startswith("Sharding callback duration:")
               for m in records.messages), records.messages
  finally:
    logging.set_verbosity(saved_verbosity)
    tf_logger.setLevel(saved_level)
    tf_logger.removeHandler(records)
    absl_logger.removeHandler(records)


def test_compact_formatter():
  record = std_logging.LogRecord("x", std_logging.WARNING, "f.py", 1,
                                 "disk %s", ("full",), None)
  text = logs.CompactFormatter().format(record)
  assert text.endswith(" WARNING: disk full") and text[2] == ":"


def test_import_tensorflow_quietly_prints_no_start_up_chatter():
  """What the training entry points' `main` calls before importing k4p1.train."""
  env = {k: v for k, v in os.environ.items()
         if k not in ("TF_CPP_MIN_LOG_LEVEL", "K4P1_TF_IMPORT_LOGS")}
  script = ("from experiments import logs; logs.import_tensorflow_quietly(); "
            "import tensorflow; print('ok')")
  quiet = subprocess.run(
      [sys.executable, "-c", script],
      capture_output=True, text=True, env=env, check=True, timeout=120)
  assert quiet.stdout == "ok\n" and not quiet.stderr.strip(), quiet.stderr
  loud = subprocess.run(
      [sys.executable, "-c", script],
      capture_output=True, text=True, env=dict(env, K4P1_TF_IMPORT_LOGS="1"), check=True,
      timeout=120)
  # On this build TensorFlow does print them: the first test checks something.
  assert "absl::InitializeLog" in loud.stderr or "cuda" in loud.stderr


def _transfer(workdir, *extra):
  env = {k: v for k, v in os.environ.items()
         if k not in ("TF_CPP_MIN_LOG_LEVEL", "K4P1_TF_IMPORT_LOGS")}
  return subprocess.run(
      [sys.executable, "-m", "experiments.transfer", "--dataset=mnist5k:0-2",
       "--weights=none", "--alpha=0.35", "--image_size=32", "--batch_size=16",
       "--train_steps=4", "--checkpoint_every=2", "--precise_bn_batches=2",
       "--patch=scale_bias+logits", f"--workdir={workdir}", *extra],
      capture_output=True, text=True, env=env, timeout=300, check=True)


@pytest.mark.slow
def test_a_run_logs_progress_and_a_table_and_nothing_else(tmp_path):
  run = _transfer(tmp_path / "quiet")
  log = run.stderr
  assert "step 4/4: loss " in log and "images/sec" in log
  assert "eval at step 4: mnist5k_0-2 accuracy" in log
  assert "bn_init=preserve: 52 BN layers start as the base's function" in log
  assert "| mnist5k_0-2 | mnist5k:0-2 |" in run.stdout
  # TensorFlow's own oneDNN notice is chatter; k4p1's line naming the
  # kernels a run uses is not.
  assert "CPU kernels: oneDNN " in log
  for chatter in ("Sharding callback", "retracing", "absl::InitializeLog",
                  "cuda", "Saved checkpoint", "Weights digest",
                  "oneDNN custom operations"):
    assert chatter not in log, (chatter, log)
  assert len(log.splitlines()) <= 10, log
  # absl's --verbosity=1 (DEBUG) shows k4p1's detail and TensorFlow's INFO.
  verbose = _transfer(tmp_path / "verbose", "--verbosity=1").stderr
  for detail in ("Saved checkpoint", "Weights digest", "Sharding callback",
                 "First step (tracing included)"):
    assert detail in verbose, (detail, verbose)
