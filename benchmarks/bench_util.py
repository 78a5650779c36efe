"""Helpers shared by the benchmark scripts (no flags: importable by each)."""

import json
import os
import platform
import statistics
import subprocess
import sys

# The benchmark scripts are entry points: like k4p1's (experiments/logs.py),
# they pool TensorFlow's CPU memory unless told otherwise, before TensorFlow
# loads (every script imports this module first).
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

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



def describe_cpu(cpu: dict) -> str:
  """`cpu_description()`'s dict as a table head, e.g. "AMD EPYC, 2 cores, avx avx2 fma"."""
  return (f"{cpu['model']}, {cpu['cores']} cores, "
          f"{' '.join(cpu['vector_extensions']) or 'no AVX'}")


def cpu_seconds() -> float:
  """User + system CPU seconds of this process so far (all its threads)."""
  times = os.times()
  return times.user + times.system

# `--cpu_allocator` values -> TF_CPU_ALLOCATOR_USE_BFC of worker processes.
CPU_ALLOCATORS = {"inherit": None, "bfc": "true", "malloc": "false"}
# TF_ENABLE_ONEDNN_OPTS per `--onednn` setting of a worker (None: inherit).
ONEDNN_SETTINGS = {"inherit": None, "on": "1", "off": "0"}
CPU_ALLOCATOR_HELP = (
    "The workers' TensorFlow CPU allocator (TF_CPU_ALLOCATOR_USE_BFC): bfc "
    "(pooled) or malloc (TensorFlow's default without oneDNN); inherit: this "
    "process's environment (bfc unless the variable is set, as k4p1's entry "
    "points do).")


def worker_environment(cpu_allocator: str = "inherit",
                       onednn: str = "inherit") -> dict:
  """The environment of a benchmark's TensorFlow worker process.

  Args:
    cpu_allocator: a key of `CPU_ALLOCATORS`.
    onednn: a key of `ONEDNN_SETTINGS`: TensorFlow reads
      TF_ENABLE_ONEDNN_OPTS once, at import, so each setting needs its own
      process.
  """
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  # As k4p1's entry points (experiments/logs.py): pooled unless set.
  env.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
  if CPU_ALLOCATORS[cpu_allocator] is not None:
    env["TF_CPU_ALLOCATOR_USE_BFC"] = CPU_ALLOCATORS[cpu_allocator]
  if ONEDNN_SETTINGS[onednn] is not None:
    env["TF_ENABLE_ONEDNN_OPTS"] = ONEDNN_SETTINGS[onednn]
  return env


def tf_runtime() -> dict:
  """TensorFlow's CPU kernels and allocator in this process (imports TF).

  Returns:
    {"onednn": whether oneDNN kernels are on (TF turns them on by default
    only on CPUs with AVX-512 VNNI/BF16 or AMX; TF_ENABLE_ONEDNN_OPTS
    overrides), "cpu_allocator": "bfc" (TF_CPU_ALLOCATOR_USE_BFC), "onednn"
    (oneDNN's pooled allocator) or "malloc" (every tensor from the C heap)}.
  """
  from tensorflow.python.util import _pywrap_util_port  # pylint: disable=g-import-not-at-top
  onednn = bool(_pywrap_util_port.IsMklEnabled())
  bfc = os.environ.get("TF_CPU_ALLOCATOR_USE_BFC", "").lower() in ("1", "true")
  return {"onednn": onednn,
          "cpu_allocator": "bfc" if bfc else "onednn" if onednn else "malloc"}


def describe_runtime(runtime) -> str:
  """`tf_runtime()`'s dict as text, e.g. "oneDNN off, allocator bfc"."""
  if not runtime:
    return "TF runtime unknown"
  return (f"oneDNN {'on' if runtime['onednn'] else 'off'}, allocator "
          f"{runtime['cpu_allocator']}")


def paired_ratios(row: dict, reference: dict, name: str) -> dict:
  """Per-round speed ratios of `row` to `reference`, wall and CPU time.

  Both have per-round "rounds" (images/sec) and "cpu_ms_rounds". In round r
  every worker ran once, one after another, so pairing rounds cancels slow
  load changes; the spread of the per-round ratios is what remains of the
  noise. Ratios > 1: `row` is faster (wall) or uses less CPU time per step.
  """
  wall = [r / f for r, f in zip(row["rounds"], reference["rounds"])]
  cpu = [f / r if r else float("nan")
         for r, f in zip(row["cpu_ms_rounds"], reference["cpu_ms_rounds"])]
  return {f"ratio_to_{name}_rounds": wall,
          f"cpu_ratio_to_{name}": statistics.median(cpu),
          f"cpu_ratio_to_{name}_rounds": cpu}


def spread(values) -> str:
  """`median [min–max]` of per-round ratios ("n/a" without any)."""
  if not values:
    return "n/a"
  return (f"{statistics.median(values):.2f} "
          f"[{min(values):.2f}–{max(values):.2f}]")


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



class Worker:
  """A benchmark worker process, spoken to over pipes.

  The worker is `script` run with `args`; it prints `READY <json info>` once
  warmed up, then answers each `run N` line with one JSON line and exits on
  `quit`.
  """

  def __init__(self, label: str, script: str, args, env: dict):
    """Starts the worker; `wait_ready()` returns once it has warmed up."""
    self.label = label
    self.process = subprocess.Popen(
        [sys.executable, os.path.abspath(script)] + list(args),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    self.info = None

  def wait_ready(self) -> None:
    for line in self.process.stdout:
      if line.startswith("READY "):
        self.info = json.loads(line[len("READY "):])
        return
    raise RuntimeError(f"Worker {self.label} exited with "
                       f"{self.process.wait()} before it was ready.")

  def run(self, steps: int) -> dict:
    self.process.stdin.write(f"run {steps}\n")
    self.process.stdin.flush()
    return json.loads(self.process.stdout.readline())

  def close(self) -> None:
    try:
      self.process.stdin.write("quit\n")
      self.process.stdin.flush()
    except BrokenPipeError:
      pass
    stop(self.process)
