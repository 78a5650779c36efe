"""One run per workdir: a lock file that the live run keeps refreshing.

```python
with workdir_lock.hold(workdir, command="python -m experiments.transfer ..."):
  ...  # train, write the workdir's files
```
`<workdir>/run.lock` is a small JSON record of its holder: host, pid (and the
process's start time, where /proc gives it), start time, command, a random
token, and a heartbeat time the holder rewrites every `HEARTBEAT_SECONDS`.
It is read and written through `k4p1.atomic` and `tf.io.gfile`, so it works on
every filesystem a workdir can be on (no `fcntl`: GCS has no locks).

Taking it: read the lock; a live holder's lock stops us with
`WorkdirLockedError`, which names the holder and how to proceed. Otherwise
write ours, wait `settle_seconds`, and read it back: of processes that started
together, the last writer wins and the others stop with the same error (the
heartbeat also checks the token, and logs an error if the lock was lost).

A holder is gone (its lock is stale, and is taken over with a warning) when:
* it is on this host (same host name) and its pid is not running, is a zombie,
  or is another process (another start time: the pid was reused); or it is
  this process's pid without being a lock this process holds;
* it is on another host and its heartbeat is older than `STALE_SECONDS`
  (pids of other hosts cannot be checked; clocks are assumed within seconds).
So a run killed with kill -9 is resumed at once on its host, and after a power
loss from any host once `STALE_SECONDS` have passed.
"""

import contextlib
import datetime
import json
import os
import socket
import threading
import time
from typing import Iterator, Optional
import uuid

from absl import logging

from k4p1 import atomic
from k4p1 import paths
from k4p1 import workdir as workdir_lib

HEARTBEAT_SECONDS = 20.0
STALE_SECONDS = 120.0  # Six missed heartbeats.
# Tokens of the locks this process holds (a thread may hold one of several).
_HELD: set = set()


class WorkdirLockedError(workdir_lib.WorkdirMismatchError):
  """Another live run holds the workdir."""


def settle_seconds(workdir: str) -> float:
  """How long a writer waits before reading its lock back (remote: longer)."""
  return 0.2 if paths.scheme(workdir) in ("", "ram") else 2.0


def _proc_stat(pid: int) -> Optional[tuple[str, str]]:
  """(state, start time in clock ticks since boot) from /proc; None elsewhere."""
  try:
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
      fields = f.read().rpartition(")")[2].split()
  except OSError:
    return None
  return (fields[0], fields[19]) if len(fields) > 19 else None


def _running(pid, start) -> bool:
  """Whether process `pid` of this host runs and is the one started at `start`."""
  if not isinstance(pid, int) or pid <= 0:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass  # Another user's process: it exists.
  stat = _proc_stat(pid)
  if stat is None:
    return True
  state, started = stat
  return state not in ("Z", "X") and (start is None or started == start)


def _record(token: str, started: float, command: str) -> dict:
  stat = _proc_stat(os.getpid())
  return {"host": socket.gethostname(), "pid": os.getpid(),
          "process_start": stat[1] if stat else None, "token": token,
          "started": started, "heartbeat": time.time(), "command": command}


def _read(path: str) -> Optional[dict]:
  """The lock record at `path`; None if there is none (or it is unreadable)."""
  try:
    record = json.loads(paths.read_text(path))
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as e:
    logging.warning("Ignoring unreadable lock file %s: %s", path, e)
    return None
  return record if isinstance(record, dict) else None


def stale_reason(record: dict) -> Optional[str]:
  """Why `record`'s holder is gone (see the module docstring); None if alive."""
  if record.get("host") == socket.gethostname():
    pid = record.get("pid")
    if pid == os.getpid():
      return (None if record.get("token") in _HELD else
              "it names this process's pid, but this process does not hold it")
    if not _running(pid, record.get("process_start")):
      return f"process {pid} is no longer running on this host"
    return None
  age = time.time() - float(record.get("heartbeat") or 0)
  if age > STALE_SECONDS:
    return f"its heartbeat is {age:.0f} s old (stale after {STALE_SECONDS:.0f} s)"
  return None


def _utc(seconds) -> str:
  return datetime.datetime.fromtimestamp(
      float(seconds or 0), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def locked_error(workdir: str, record: dict) -> WorkdirLockedError:
  """The error naming `record`'s holder and how to proceed."""
  host, pid = record.get("host"), record.get("pid")
  age = time.time() - float(record.get("heartbeat") or 0)
  return WorkdirLockedError(
      f"Workdir {workdir!r} is in use by another run: host {host}, pid {pid}, "
      f"started {_utc(record.get('started'))}, heartbeat {age:.0f} s ago "
      f"(command: {record.get('command') or '?'}). One run at a time may use a "
      f"workdir. Wait for that run to end, or stop it (kill {pid} on {host}) "
      "and rerun this command: it resumes from the last checkpoint. A lock "
      "whose run died (kill -9, power loss) does not block: it is taken over "
      f"at once on its host (pid {pid} gone), and from other hosts once its "
      f"heartbeat is over {STALE_SECONDS:.0f} s old. If you are sure no run "
      f"uses the workdir, delete {workdir_lib.lock_path(workdir)}; or use "
      "another --workdir.")


class WorkdirLock:
  """A held lock: `release()` it (or use `hold`); a thread refreshes it."""

  def __init__(self, workdir: str, record: dict):
    self.workdir, self.record = workdir, record
    self.path = workdir_lib.lock_path(workdir)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._beat, daemon=True,
                                    name="k4p1-workdir-lock")
    self._thread.start()

  def _beat(self) -> None:
    while not self._stop.wait(HEARTBEAT_SECONDS):
      current = _read(self.path)
      if current is None or current.get("token") != self.record["token"]:
        logging.error(
            "Lost the lock of workdir %s to %s: another run may be writing "
            "into it.", self.workdir, current and
            {k: current.get(k) for k in ("host", "pid", "command")})
        return
      self.record["heartbeat"] = time.time()
      try:
        atomic.write_text_atomic(self.path, json.dumps(self.record))
      except Exception as e:  # pylint: disable=broad-except
        logging.warning("Could not refresh the lock %s: %s", self.path, e)

  def release(self) -> None:
    """Stops the heartbeat and deletes the lock if it is still this one's."""
    self._stop.set()
    self._thread.join()
    _HELD.discard(self.record["token"])
    try:
      current = _read(self.path)
      if current is not None and current.get("token") == self.record["token"]:
        paths.remove_file(self.path)
    except Exception as e:  # pylint: disable=broad-except
      # Not over the run's own outcome: a left lock is taken over as stale.
      logging.warning("Could not remove the lock %s: %s", self.path, e)


def acquire(workdir: str, command: str = "") -> WorkdirLock:
  """Takes `workdir`'s lock (see the module docstring).

  Raises:
    WorkdirLockedError: a live run holds it (the message names it).
  """
  path = workdir_lib.lock_path(workdir)
  current = _read(path)
  if current is not None:
    reason = stale_reason(current)
    if reason is None:
      raise locked_error(workdir, current)
    logging.warning("Taking over the lock of workdir %s from host %s, pid %s "
                    "(started %s): %s.", workdir, current.get("host"),
                    current.get("pid"), _utc(current.get("started")), reason)
  token = uuid.uuid4().hex
  record = _record(token, time.time(), command)
  _HELD.add(token)
  try:
    atomic.write_text_atomic(path, json.dumps(record))
    time.sleep(settle_seconds(workdir))
    current = _read(path)
  except BaseException:
    _HELD.discard(token)
    raise
  if current is None or current.get("token") != token:
    _HELD.discard(token)
    if current is None:
      raise WorkdirLockedError(
          f"The lock {path} vanished while this run was taking it: another "
          "process is using the workdir. Rerun when it is done.")
    raise locked_error(workdir, current)
  return WorkdirLock(workdir, record)


@contextlib.contextmanager
def hold(workdir: str, command: str = "", enabled: bool = True) -> Iterator[None]:
  """Holds `workdir`'s lock for the block (nothing if not `enabled`)."""
  if not enabled:
    yield
    return
  lock = acquire(workdir, command)
  try:
    yield
  finally:
    lock.release()
