"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file k4p1 writes (JSON, patches, weights, plots, tables, SavedModels)
goes through this module, on a local disk or at a URL (`k4p1.paths`):

* local paths: the content is written to a temp path in the same directory,
  fsynced, then renamed over the target, so a run killed mid-write (or a
  power loss) leaves the previous file intact. Files and directories get the
  mode a plain `open` or `mkdir` would give them (per the umask), not the
  temp file's private 0600.
* URLs on a filesystem with rename (`ram://`, `hdfs://`, ...): the same,
  through `tf.io.gfile` (a temp object beside the target, then a rename).
  TensorFlow is imported at the first URL only (`k4p1.paths`).
* object stores (`OBJECT_STORES`: `gs://`, `s3://`): they have no atomic
  rename (TensorFlow's GCS rename is a copy, then a delete), but a single
  object write is atomic there: the object appears whole when the upload
  ends, or not at all. So each file is written directly, as one object.

A directory (`output_dir`, the SavedModel export) is staged beside its target;
on a local disk it replaces the target by rename. At a URL, directories cannot
be renamed (not atomically on GCS, and `ram://` loses their files), so the
old directory is deleted and the staged files are copied in: an interrupted
copy leaves a partial directory. A run writes results.json after every other
artefact, so results.json is the run's marker of complete outputs.

```python
atomic.write_bytes_atomic("out/results.json", b"...")
atomic.write_text_atomic("gs://bucket/out/table.md", "...")
with atomic.output_path("out/backbone.weights.h5") as tmp:
  model.save_weights(tmp)          # a writer that wants a local path
with atomic.output_dir("out/export") as tmp_dir:
  tf.saved_model.save(module, tmp_dir)
```
"""

import contextlib
import os
import shutil
import tempfile
from typing import Iterator
import uuid

from k4p1 import paths

# Schemes whose filesystems have no atomic rename but atomic object writes.
OBJECT_STORES = ("gs", "s3")


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


def _url_temp(path: str) -> str:
  """A fresh temp name beside the URL `path` (same directory, same filesystem)."""
  directory, name = os.path.dirname(path), os.path.basename(path)
  return os.path.join(directory, f".tmp-{uuid.uuid4().hex[:12]}.{name}")


def _write_url(path: str, data: bytes) -> None:
  """One write of the whole `data` to the URL `path`."""
  gfile = paths.tensorflow().io.gfile
  gfile.makedirs(os.path.dirname(path))
  with gfile.GFile(path, "wb") as f:
    f.write(data)


def write_bytes_atomic(path, data: bytes) -> None:
  """Writes `data` to `path` atomically (see the module docstring).

  Locally and at URLs with rename, the temp file is `.tmp-<random>.<name>`;
  it is removed if anything fails, and an existing file at `path` stays
  intact until the rename.
  """
  path = os.fspath(path)
  if not paths.is_url(path):
    with output_path(path) as tmp:
      with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return
  if paths.scheme(path) in OBJECT_STORES:
    _write_url(path, data)
    return
  tmp = _url_temp(path)
  try:
    _write_url(tmp, data)
    paths.tensorflow().io.gfile.rename(tmp, path, overwrite=True)
  finally:
    paths.remove_file(tmp)


def write_text_atomic(path, text: str) -> None:
  """`write_bytes_atomic` of `text` encoded as UTF-8."""
  write_bytes_atomic(path, text.encode("utf-8"))


@contextlib.contextmanager
def output_path(path) -> Iterator[str]:
  """Yields a local temp path; it becomes `path` if the block succeeds.

  The temp name keeps `path`'s full suffix (e.g. `.weights.h5`), for writers
  that choose the format from it. A local `path` gets a temp file beside it,
  renamed over it; a URL gets one in the local temp directory, whose bytes
  are then written with `write_bytes_atomic`. On an exception the temp file
  is removed and `path` is untouched.
  """
  path = os.fspath(path)
  url = paths.is_url(path)
  directory = None if url else _directory_of(path)
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="." + os.path.basename(path),
                             dir=directory)
  os.close(fd)
  try:
    yield tmp
    if url:
      with open(tmp, "rb") as f:
        write_bytes_atomic(path, f.read())
    else:
      _publish_mode(tmp, 0o666)
      os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


@contextlib.contextmanager
def output_dir(path) -> Iterator[str]:
  """Yields an empty temp directory beside `path`; it replaces `path` on success.

  Locally, an existing directory at `path` is moved aside first and deleted
  after the rename, so the window without a complete `path` is two renames
  long. At a URL, see the module docstring (delete, then copy in). On an
  exception the temp directory is removed and `path` is untouched.
  """
  path = os.fspath(path)
  if paths.is_url(path):
    with _url_output_dir(path) as staging:
      yield staging
    return
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


@contextlib.contextmanager
def _url_output_dir(path: str) -> Iterator[str]:
  """`output_dir` at a URL: staged beside `path`, then copied file by file."""
  staging = _url_temp(path.rstrip("/"))
  gfile = paths.tensorflow().io.gfile
  gfile.makedirs(staging)
  try:
    yield staging
    paths.remove_tree(path)
    for parent, _, names in gfile.walk(staging):
      target = os.path.join(path, paths.relative(parent, staging)
                            if parent != staging else "")
      gfile.makedirs(target)
      for name in names:
        gfile.copy(os.path.join(parent, name), os.path.join(target, name),
                   overwrite=True)
  finally:
    paths.remove_tree(staging)
