"""Helpers shared by the benchmark scripts (no flags: importable by each)."""

import subprocess


def peak_rss_mb() -> float:
  """This process's peak resident set size (VmHWM) in MB; NaN off Linux."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024.0
  except OSError:
    pass
  return float("nan")


def stop(process, timeout: float = 60.0) -> None:
  """Waits for a worker that was told to quit; kills it if it hangs.

  The measurements are already in the parent: a worker stuck in interpreter
  teardown must not cost them.
  """
  try:
    process.wait(timeout=timeout)
  except subprocess.TimeoutExpired:
    process.kill()
    process.wait()
