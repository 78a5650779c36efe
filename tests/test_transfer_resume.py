"""A run killed with SIGKILL after its first checkpoint resumes when rerun.

The killed run's workdir lock stays behind; the rerun, on the same host,
sees that its pid is gone and takes the lock over (k4p1.workdir_lock).
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import keras

from k4p1 import data
from k4p1 import eval as eval_lib
from k4p1 import models
from k4p1 import patches

REPO = pathlib.Path(__file__).resolve().parents[1]
STEPS = 200
CHECKPOINT_EVERY = 5


def _command(workdir, weights):
  return [sys.executable, "-m", "experiments.transfer", "--config=tiny_cpu",
          f"--workdir={workdir}", f"--weights={weights}", "--dataset=digits",
          "--patch=scale_bias+logits", f"--train_steps={STEPS}",
          f"--checkpoint_every={CHECKPOINT_EVERY}", "--eval_every=0"]


def test_sigkilled_run_resumes_to_the_requested_steps(tmp_path):
  keras.utils.set_random_seed(0)
  base = models.build_backbone("mobilenet_v2", 32, weights=None, alpha=0.35)
  weights = str(tmp_path / "base.weights.h5")
  base.save_weights(weights)
  workdir = tmp_path / "run"
  command = _command(workdir, weights)

  first = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
  index = workdir / "checkpoints" / "checkpoint"
  deadline = time.monotonic() + 240
  while not index.exists() and first.poll() is None and time.monotonic() < deadline:
    time.sleep(0.02)
  first.send_signal(signal.SIGKILL)
  _, stderr = first.communicate()
  assert first.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
  assert index.exists() and not (workdir / "results.json").exists()
  lock = workdir / "run.lock"
  assert json.loads(lock.read_text())["pid"] == first.pid

  second = subprocess.run(command, cwd=REPO, capture_output=True, timeout=300)
  assert second.returncode == 0, second.stderr.decode()[-3000:]
  results = json.loads((workdir / "results.json").read_text())
  # It resumed (did not start over) and ended where asked, with one optimizer
  # update per step over both processes.
  assert results["resumed_from_step"] >= CHECKPOINT_EVERY
  assert results["resumed_from_step"] % CHECKPOINT_EVERY == 0
  assert results["steps"] == results["optimizer_steps"] == STEPS
  assert "Restored" in second.stderr.decode()
  assert (f"Taking over the lock of workdir {workdir} from host "
          f"{socket.gethostname()}, pid {first.pid}") in second.stderr.decode()
  assert "is no longer running on this host" in second.stderr.decode()
  assert not lock.exists()
  # The first process initialised the BN layers; the checkpoint carries them.
  assert results["bn_init"] == {"method": "preserve",
                                "restored_from_checkpoint": True}

  # The patch loads onto the same base, and gives the accuracy it reported.
  fresh = models.build_backbone("mobilenet_v2", 32, weights=weights, alpha=0.35)
  task = patches.load_patch(fresh, os.fspath(workdir / "patches" / "digits.safetensors"))
  evaluation = data.build_dataset("digits", "test", global_batch_size=32,
                                  image_size=32, training=False, architecture="mobilenet_v2")
  accuracy = eval_lib.evaluate_accuracy(task, evaluation)["accuracy"]
  assert accuracy == results["tasks"]["digits"]["accuracy"]
