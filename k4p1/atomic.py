"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

import os
import tempfile


def write_bytes_atomic(path: str, data: bytes) -> None:
  """Writes `data` to `path` through a temp file in the same directory + rename.

  The temp file is `.<name>.<random>.tmp`; it is removed if anything fails, and
  an existing file at `path` stays intact until the rename.
  """
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".",
                             suffix=".tmp", dir=directory)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
