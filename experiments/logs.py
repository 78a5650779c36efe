"""Logs a person reads: TensorFlow's chatter out, `--verbosity` as absl has it.

k4p1's own lines (progress, evaluation, PreciseBN, where results went) are
INFO; its detail (strategy, checkpoints, digests, tracing time) is DEBUG and
shows with `--verbosity=1`. TensorFlow's chatter is silenced here, where it is
TensorFlow's:

- `import tensorflow` writes C++ lines to stderr before logging is set up
  ("All log messages before absl::InitializeLog()", "Could not find cuda
  drivers", the CPU-instructions notice, oneDNN's "custom operations are
  on"). `import_tensorflow_quietly` captures
  the import's stderr and replays everything but those lines, and sets
  `TF_CPP_MIN_LOG_LEVEL` (if unset) to hide TensorFlow's later C++ INFO lines,
  and on a machine without an NVIDIA driver its C++ errors too (the CUDA
  build's "failed call to cuInit"). Set `K4P1_TF_IMPORT_LOGS=1` to see all.
- TensorFlow logs an INFO line per checkpoint ("Sharding callback duration",
  through absl's logger): `configure` drops the lines in `TF_CHATTER` unless
  the verbosity is DEBUG, and removes the handler TensorFlow adds to its logger
  when imported before absl's is set up, which printed each of its warnings
  twice.

An entry point that stops on a problem the user fixes (a bad flag, a missing
dataset) says so in one line, `fatal`, instead of a traceback.
"""

import contextlib
import logging as std_logging
import os
import re
import sys
import tempfile
import time
from typing import NoReturn

from absl import logging

# Lines `import tensorflow` writes to stderr that say nothing to act on.
IMPORT_CHATTER = re.compile(
    r"All log messages before absl::InitializeLog\(\)|cudart_stub\.cc|"
    r"cpu_feature_guard\.cc|^To enable the following instructions|"
    r"Unable to register cu(DNN|FFT|BLAS) factory|computation placer already "
    r"registered|TF-TRT Warning|"
    # On by default on AVX-512 CPUs (README "CPU speed" says which is active).
    r"oneDNN custom operations are on")
# TensorFlow Python log messages that are chatter at INFO verbosity.
TF_CHATTER = re.compile(r"^Sharding callback duration")


def fatal(message) -> NoReturn:
  """Exits with status 1 after `FATAL <message>` on stderr (one line to act on)."""
  print(f"FATAL {message}", file=sys.stderr)
  sys.exit(1)


@contextlib.contextmanager
def _stderr_to(file):
  sys.stderr.flush()
  saved = os.dup(2)
  os.dup2(file.fileno(), 2)
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)


def import_tensorflow_quietly() -> None:
  """Imports TensorFlow with its start-up chatter removed from stderr.

  A no-op if TensorFlow is already imported or `K4P1_TF_IMPORT_LOGS` is set.
  Every other line the import writes is replayed to stderr, also when the
  import fails. Before the import it pools TensorFlow's CPU memory
  (`TF_CPU_ALLOCATOR_USE_BFC=true` unless set): without oneDNN, TensorFlow's
  CPU allocator is malloc, and glibc maps each large activation afresh every
  step (~30% of a step at 224 px on an AVX2 CPU). A process setting, so the
  entry points make it, not `import k4p1`.
  """
  os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
  if "tensorflow" in sys.modules or os.environ.get("K4P1_TF_IMPORT_LOGS"):
    return
  # Without an NVIDIA driver, TensorFlow's CUDA build logs a C++ *error* when
  # it looks for GPUs ("failed call to cuInit"); its other C++ errors reach
  # Python as exceptions. With a driver, only C++ INFO is hidden.
  has_driver = os.path.exists("/proc/driver/nvidia") or os.path.exists(
      "/dev/nvidia0")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if has_driver else "3")
  with tempfile.TemporaryFile(mode="w+b") as captured:
    try:
      with _stderr_to(captured):
        import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
    finally:
      captured.seek(0)
      kept = [line for line in captured.read().decode(errors="replace")
              .splitlines(keepends=True) if not IMPORT_CHATTER.search(line)]
      sys.stderr.write("".join(kept))


class _DropChatter(std_logging.Filter):
  """Drops TensorFlow's INFO chatter (`TF_CHATTER`) below DEBUG verbosity."""

  def filter(self, record):
    if record.levelno > std_logging.INFO or logging.level_debug():
      return True
    return not TF_CHATTER.search(record.getMessage())


class CompactFormatter(std_logging.Formatter):
  """`17:29:51 message`, levels other than INFO named: for the demo."""

  def format(self, record):
    stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
    level = "" if record.levelno == std_logging.INFO else f"{record.levelname}: "
    text = f"{stamp} {level}{record.getMessage()}"
    if record.exc_info:
      text += "\n" + self.formatException(record.exc_info)
    return text


def configure(compact: bool = False) -> None:
  """Sets up logging after absl parsed the flags (call it from `main`).

  Args:
    compact: replace absl's `I1201 17:29:51.946926 1400... file.py:12]`
      prefix with the time of day (the demo's output is read, not grepped).
  """
  tf_logger = std_logging.getLogger("tensorflow")
  absl_handler = logging.get_absl_handler()
  if absl_handler in std_logging.getLogger().handlers:
    for handler in list(tf_logger.handlers):  # Its records reach absl's too.
      tf_logger.removeHandler(handler)
  # TensorFlow logs through absl's logger too (its checkpoint saver does).
  for logger in (tf_logger, std_logging.getLogger("absl")):
    if not any(isinstance(f, _DropChatter) for f in logger.filters):
      logger.addFilter(_DropChatter())
  if compact:
    absl_handler.setFormatter(CompactFormatter())
