"""Paths on any filesystem TensorFlow reads: local disks and URLs.

A path with a scheme, `gs://bucket/runs/a` or `ram://k4p1/run` (TensorFlow's
in-memory filesystem), is a URL: k4p1 reads, lists and deletes it through
`tf.io.gfile`, and writes it through `k4p1.atomic`. Any other path is local,
read through Python's `os` and `open`: TensorFlow is imported at the first
URL, so code that reads local files (the report) runs without it.
`os.path.join` joins both kinds (on POSIX); `os.path.abspath`, `relpath` and
`pathlib` mangle URLs ("ram://a" becomes "ram:/a"), so k4p1 uses `absolute`,
`relative` and `basename` from here instead.

```python
paths.is_url("gs://b/run")                 # True
paths.absolute("runs/a")                   # "/home/me/runs/a"; URLs as given
paths.read_text(workdir_lib.results_path("ram://k4p1/run"))
with paths.local_copy("gs://b/base.weights.h5") as local:  # for h5py & co.
  model.load_weights(local)
```
Read errors are Python's (`FileNotFoundError`, `PermissionError`, `OSError`),
whichever the filesystem, not `tf.errors`. `tensorflow()` gives other modules
the TensorFlow module for their own URL work (`k4p1.atomic`).
"""

import contextlib
import errno
import os
import posixpath
import shutil
import tempfile
from typing import Iterator

from k4p1.core import names

# Whether `path` has a scheme (`gs://...`, `ram://...`): not a local path.
is_url = names.is_url


def tensorflow():
  """The `tensorflow` module, imported at the first use of a URL."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf


def scheme(path) -> str:
  """`path`'s scheme, lower case ("gs", "ram"); "" for a local path."""
  path = os.fspath(path)
  return path.split("://", 1)[0].lower() if is_url(path) else ""


def absolute(path) -> str:
  """`os.path.abspath` of a local path; a URL as given (no trailing slash)."""
  path = os.fspath(path)
  return path.rstrip("/") if is_url(path) else os.path.abspath(path)


def relative(path, start) -> str:
  """`path` relative to the directory `start`, as `os.path.relpath` gives it.

  Raises:
    ValueError: one is a URL and the other is not, or of another scheme.
  """
  path, start = os.fspath(path), os.fspath(start)
  if not (is_url(path) or is_url(start)):
    return os.path.relpath(path, start)
  if scheme(path) != scheme(start) or not is_url(path) or not is_url(start):
    raise ValueError(f"{path!r} and {start!r} are on different filesystems.")
  return posixpath.relpath("/" + path.split("://", 1)[1],
                           "/" + start.split("://", 1)[1])


def basename(path) -> str:
  """The last component of `path` ("run" for "ram://k4p1/run/")."""
  return os.path.basename(absolute(path))


def _os_error(e, path: str) -> OSError:
  """The Python error matching TensorFlow's `e` (a `tf.errors.OpError`)."""
  errors = tensorflow().errors
  if isinstance(e, errors.NotFoundError):
    return FileNotFoundError(errno.ENOENT, "No such file or directory", path)
  if isinstance(e, errors.PermissionDeniedError):
    return PermissionError(errno.EACCES, "Permission denied", path)
  return OSError(errno.EIO, e.message, path)


def read_bytes(path, limit: int = -1) -> bytes:
  """The content of the file `path` (its first `limit` bytes if limit >= 0)."""
  path = os.fspath(path)
  if not is_url(path):
    with open(path, "rb") as f:
      return f.read(limit)
  tf = tensorflow()
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      return f.read(limit)
  except tf.errors.OpError as e:
    raise _os_error(e, path) from e


def read_text(path) -> str:
  """`read_bytes(path)` decoded as UTF-8."""
  return read_bytes(path).decode("utf-8")


def exists(path) -> bool:
  path = os.fspath(path)
  return tensorflow().io.gfile.exists(path) if is_url(path) else os.path.exists(path)


def isdir(path) -> bool:
  path = os.fspath(path)
  return tensorflow().io.gfile.isdir(path) if is_url(path) else os.path.isdir(path)


def isfile(path) -> bool:
  return exists(path) and not isdir(path)


def listdir(path) -> list[str]:
  """The names in directory `path` (unsorted, without trailing slashes)."""
  path = os.fspath(path)
  if not is_url(path):
    return os.listdir(path)
  tf = tensorflow()
  try:
    return [name.rstrip("/") for name in tf.io.gfile.listdir(path)]
  except tf.errors.OpError as e:
    raise _os_error(e, path) from e


def walk(top) -> Iterator[tuple[str, list[str], list[str]]]:
  """`os.walk(top)` (top-down; pruning the yielded directory list works)."""
  top = os.fspath(top)
  return tensorflow().io.gfile.walk(top) if is_url(top) else os.walk(top)


def size(path) -> int:
  """The file's size in bytes."""
  path = os.fspath(path)
  if not is_url(path):
    return os.path.getsize(path)
  tf = tensorflow()
  try:
    return tf.io.gfile.stat(path).length
  except tf.errors.OpError as e:
    raise _os_error(e, path) from e


def makedirs(path) -> None:
  """Creates the directory `path` and its parents; one that exists is fine."""
  path = os.fspath(path)
  if is_url(path):
    tensorflow().io.gfile.makedirs(path)
  else:
    os.makedirs(path, exist_ok=True)


def remove_tree(path) -> None:
  """Deletes the directory `path` and everything in it, if it exists."""
  path = os.fspath(path)
  if not is_url(path):
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
    elif os.path.lexists(path):
      os.remove(path)
    return
  tf = tensorflow()
  if tf.io.gfile.exists(path):
    tf.io.gfile.rmtree(path)


def remove_file(path) -> None:
  """Deletes the file `path` if it exists."""
  path = os.fspath(path)
  if not is_url(path):
    try:
      os.remove(path)
    except FileNotFoundError:
      pass
    return
  tf = tensorflow()
  try:
    tf.io.gfile.remove(path)
  except tf.errors.NotFoundError:
    pass


@contextlib.contextmanager
def local_copy(path) -> Iterator[str]:
  """Yields a local path holding the file `path`: itself, or a temp copy.

  For readers that need a local file (h5py, Keras' `.keras` loader). The
  copy keeps `path`'s file name as its suffix (e.g. `.weights.h5`, which
  Keras reads the format from) and is deleted when the block ends.

  Raises:
    FileNotFoundError: no file at `path`.
  """
  path = os.fspath(path)
  if not is_url(path):
    yield path
    return
  data = read_bytes(path)
  fd, local = tempfile.mkstemp(prefix="k4p1-", suffix="." + basename(path))
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    yield local
  finally:
    os.remove(local)
