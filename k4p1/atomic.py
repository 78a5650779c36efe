"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file k4p1 writes (JSON, patches, weights, plots, tables, SavedModels)
goes through this module: the content is written to a temp path in the same
directory, then renamed over the target, so a run killed mid-write leaves the
previous file intact. Files and directories get the mode a plain `open` or
`mkdir` would give them (per the umask), not the temp file's private 0600.

```python
atomic.write_bytes_atomic("out/results.json", b"...")
atomic.write_text_atomic("out/table.md", "...")
with atomic.output_path("out/backbone.weights.h5") as tmp:
  model.save_weights(tmp)          # a writer that wants a path
with atomic.output_dir("out/export") as tmp_dir:
  tf.saved_model.save(module, tmp_dir)
```
"""

import contextlib
import os
import shutil
import tempfile
from typing import Iterator


def _directory_of(path: str) -> str:
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  return directory


def _umask() -> int:
  umask = os.umask(0)  # Reading the umask means setting it; set it back.
  os.umask(umask)
  return umask


def _publish_mode(path: str, base: int) -> None:
  """Gives `path` the mode a plain `open` / `mkdir` would (mkstemp's is 0600)."""
  if os.path.exists(path):
    os.chmod(path, base & ~_umask())


def write_bytes_atomic(path: str, data: bytes) -> None:
  """Writes `data` to `path` through a temp file in the same directory + rename.

  The temp file is `.<name>.<random>.tmp`; it is removed if anything fails, and
  an existing file at `path` stays intact until the rename.
  """
  with output_path(path) as tmp:
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())


def write_text_atomic(path: str, text: str) -> None:
  """`write_bytes_atomic` of `text` encoded as UTF-8."""
  write_bytes_atomic(path, text.encode("utf-8"))


@contextlib.contextmanager
def output_path(path: str) -> Iterator[str]:
  """Yields a temp path beside `path`; renames it to `path` if the block succeeds.

  The temp name keeps `path`'s full suffix (e.g. `.weights.h5`), for writers
  that choose the format from it. On an exception the temp file is removed
  and `path` is untouched.
  """
  path = os.fspath(path)
  directory = _directory_of(path)
  name = os.path.basename(path)
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="." + name, dir=directory)
  os.close(fd)
  try:
    yield tmp
    _publish_mode(tmp, 0o666)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


@contextlib.contextmanager
def output_dir(path: str) -> Iterator[str]:
  """Yields an empty temp directory beside `path`; it replaces `path` on success.

  An existing directory at `path` is moved aside first and deleted after the
  rename, so the window without a complete `path` is two renames long. On an
  exception the temp directory is removed and `path` is untouched.
  """
  path = os.fspath(path)
  directory = _directory_of(path)
  staging = tempfile.mkdtemp(prefix=".tmp-", suffix="." + os.path.basename(path),
                             dir=directory)
  try:
    yield staging
    _publish_mode(staging, 0o777)
    old = None
    if os.path.exists(path):
      old = tempfile.mkdtemp(prefix=".old-", dir=directory)
      os.rmdir(old)
      os.replace(path, old)
    os.replace(staging, path)
    if old is not None:
      shutil.rmtree(old, ignore_errors=True)
  finally:
    if os.path.exists(staging):
      shutil.rmtree(staging, ignore_errors=True)
