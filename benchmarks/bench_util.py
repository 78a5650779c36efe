"""Helpers shared by the benchmark scripts (no flags: importable by each)."""

import os
import platform
import subprocess

# Instruction-set extensions that change TensorFlow's CPU kernels' speed.
VECTOR_EXTENSIONS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni",
                     "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def _cpuinfo_field(name: str):
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.split(":", 1)[0].strip() == name:
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return None


def cpu_model() -> str:
  """The CPU's model name (`/proc/cpuinfo`), else `platform.processor()`."""
  return _cpuinfo_field("model name") or platform.processor()


def vector_extensions() -> list:
  """Which of `VECTOR_EXTENSIONS` the CPU has (`lscpu`'s flags); [] off Linux."""
  present = set((_cpuinfo_field("flags") or "").split())
  return [x for x in VECTOR_EXTENSIONS if x in present]


def cpu_description() -> dict:
  """{"model", "vector_extensions", "cores"}: what benchmark JSON records."""
  return {"model": cpu_model(), "vector_extensions": vector_extensions(),
          "cores": os.cpu_count()}


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
