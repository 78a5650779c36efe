"""Helpers shared by the benchmark scripts (no flags: importable by each)."""


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
