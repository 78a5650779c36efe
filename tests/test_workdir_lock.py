"""One run per workdir (`k4p1.workdir_lock`).

In-process tests of the lock's rules (live holders stop a run and are named;
dead ones, on this host or, by their heartbeat, on another, are taken over),
then two real `python -m experiments.transfer` processes on one workdir. The
kill -9 then resume case is in test_transfer_resume.py.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

from absl import logging
import pytest

from k4p1 import train
from k4p1 import workdir as workdir_lib
from k4p1 import workdir_lock

REPO = pathlib.Path(__file__).resolve().parents[1]


def _write_lock(workdir, **fields) -> dict:
  record = {"host": socket.gethostname(), "pid": os.getpid(),
            "process_start": None, "token": uuid.uuid4().hex,
            "started": time.time() - 60, "heartbeat": time.time(),
            "command": "python -m experiments.transfer --workdir=elsewhere"}
  record.update(fields)
  os.makedirs(workdir, exist_ok=True)
  with open(workdir_lib.lock_path(str(workdir)), "w", encoding="utf-8") as f:
    json.dump(record, f)
  return record


@pytest.fixture
def sleeper():
  """A live process of this host, not ours."""
  process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
  yield process
  process.kill()
  process.wait()


def test_a_live_holder_on_this_host_stops_a_run_and_is_named(tmp_path, sleeper):
  _write_lock(tmp_path, pid=sleeper.pid)
  began = time.monotonic()
  with pytest.raises(workdir_lock.WorkdirLockedError) as error:
    workdir_lock.acquire(str(tmp_path))
  assert time.monotonic() - began < 1
  message = str(error.value)
  for fragment in (f"host {socket.gethostname()}", f"pid {sleeper.pid}",
                   "started 20", "UTC", f"kill {sleeper.pid}",
                   "rerun this command", "--workdir=elsewhere",
                   workdir_lib.lock_path(str(tmp_path))):
    assert fragment in message
  assert isinstance(error.value, train.WorkdirMismatchError)


def test_the_lock_of_a_process_that_is_gone_is_taken_over(tmp_path, sleeper):
  _write_lock(tmp_path, pid=sleeper.pid)
  sleeper.kill()
  sleeper.wait()
  lock = workdir_lock.acquire(str(tmp_path), command="mine")
  record = json.loads(pathlib.Path(workdir_lib.lock_path(str(tmp_path))).read_text())
  assert record["pid"] == os.getpid() and record["command"] == "mine"
  lock.release()
  assert not os.path.exists(workdir_lib.lock_path(str(tmp_path)))


def test_a_reused_pid_is_not_the_holder(tmp_path, sleeper):
  """Same pid, another process start time: the holder is gone."""
  _write_lock(tmp_path, pid=sleeper.pid, process_start="1")
  workdir_lock.acquire(str(tmp_path)).release()


def test_this_process_pid_without_its_token_is_stale(tmp_path):
  """A lock naming our pid that we do not hold (a restarted container)."""
  _write_lock(tmp_path)
  workdir_lock.acquire(str(tmp_path)).release()


def test_another_host_is_stale_only_after_its_heartbeat_stops(tmp_path):
  _write_lock(tmp_path, host="other-host", pid=1)
  with pytest.raises(workdir_lock.WorkdirLockedError, match="host other-host"):
    workdir_lock.acquire(str(tmp_path))
  old = time.time() - workdir_lock.STALE_SECONDS - 5
  _write_lock(tmp_path, host="other-host", pid=1, heartbeat=old)
  assert "heartbeat is" in workdir_lock.stale_reason(
      json.loads(pathlib.Path(workdir_lib.lock_path(str(tmp_path))).read_text()))
  workdir_lock.acquire(str(tmp_path)).release()


def test_processes_starting_together_get_one_winner(tmp_path):
  outcomes = []

  def take():
    try:
      outcomes.append(workdir_lock.acquire(str(tmp_path)))
    except workdir_lock.WorkdirLockedError as e:
      outcomes.append(e)

  threads = [threading.Thread(target=take) for _ in range(4)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  held = [o for o in outcomes if isinstance(o, workdir_lock.WorkdirLock)]
  assert len(held) == 1 and len(outcomes) == 4
  held[0].release()


def test_the_heartbeat_refreshes_the_lock_and_notices_a_takeover(
    tmp_path, monkeypatch):
  monkeypatch.setattr(workdir_lock, "HEARTBEAT_SECONDS", 0.05)
  path = pathlib.Path(workdir_lib.lock_path(str(tmp_path)))
  lock = workdir_lock.acquire(str(tmp_path))
  first = json.loads(path.read_text())["heartbeat"]
  deadline = time.monotonic() + 10
  while json.loads(path.read_text())["heartbeat"] == first:
    assert time.monotonic() < deadline
    time.sleep(0.02)
  errors = []
  monkeypatch.setattr(logging, "error", lambda *args: errors.append(args))
  deadline = time.monotonic() + 10
  while not errors:  # Until a heartbeat reads it (not between its read and write).
    assert time.monotonic() < deadline
    _write_lock(tmp_path, host="other-host")
    time.sleep(0.2)
  assert "Lost the lock" in errors[0][0]
  lock._thread.join(5)  # pylint: disable=protected-access
  assert not lock._thread.is_alive()  # pylint: disable=protected-access
  lock.release()  # Not ours any more: left in place.
  assert json.loads(path.read_text())["host"] == "other-host"


def test_run_stops_before_building_anything_on_a_held_workdir(tmp_path, sleeper):
  _write_lock(tmp_path, pid=sleeper.pid)
  with pytest.raises(workdir_lock.WorkdirLockedError, match=f"pid {sleeper.pid}"):
    train.run(train.RunConfig(workdir=str(tmp_path), dataset="digits",
                              weights=None, alpha=0.35, image_size=32,
                              train_steps=1))
  assert sorted(os.listdir(tmp_path)) == [workdir_lib.LOCK_FILE]


def _command(workdir):
  return [sys.executable, "-m", "experiments.transfer", "--config=tiny_cpu",
          f"--workdir={workdir}", "--dataset=digits", "--train_steps=2",
          "--batch_size=8", "--eval_every=0", "--checkpoint_every=0",
          "--precise_bn_batches=2"]


def test_second_process_on_a_held_workdir_stops_and_names_the_first(tmp_path):
  """Two real processes: the second stops within seconds, the first finishes.

  The first is paused (SIGSTOP) once it holds the lock, so that it is still
  running, however loaded the machine, while the second starts.
  """
  workdir = tmp_path / "run"
  lock = pathlib.Path(workdir_lib.lock_path(str(workdir)))
  first = subprocess.Popen(_command(workdir), cwd=REPO,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  try:
    deadline = time.monotonic() + 240
    while not lock.exists() and first.poll() is None:
      assert time.monotonic() < deadline, "the first run never took the lock"
      time.sleep(0.05)
    first.send_signal(signal.SIGSTOP)
    began = time.monotonic()
    second = subprocess.run(_command(workdir), cwd=REPO, capture_output=True,
                            text=True, timeout=240)
    took = time.monotonic() - began
  finally:
    first.send_signal(signal.SIGCONT)
  _, first_err = first.communicate(timeout=600)
  assert second.returncode != 0
  assert "WorkdirLockedError" in second.stderr
  assert f"pid {first.pid}" in second.stderr
  assert f"host {socket.gethostname()}" in second.stderr
  assert "Traceback" not in second.stderr
  assert took < 120, took  # Start-up (imports) included; the check is instant.
  assert first.returncode == 0, first_err.decode()[-3000:]
  assert (workdir / "results.json").exists() and not lock.exists()
