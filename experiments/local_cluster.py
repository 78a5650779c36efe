r"""Runs a multi-worker job on this machine: one process per worker on 127.0.0.1.

  python -m experiments.local_cluster --workers=2 -- --dataset=mnist5k:0-4 \
      --model=mobilenet_v2 --alpha=0.35 --image_size=32 --weights=none \
      --patch=scale_bias+logits --batch_size=32 --train_steps=40 --workdir=runs/mw

Each worker runs `python -m experiments.run <flags> --strategy=multi_worker`
with its own `TF_CONFIG`, on free loopback ports (the kind of run comes from
the flags; `--entry`, which named the entry point, is accepted and ignored). Every output line is printed
with the worker's prefix (`[w0] ...`). The launcher exits 0 when every worker
did, and otherwise with the first failing worker's code. When the job was
preempted (a worker got SIGTERM, so the cluster saved a checkpoint and exited
with TensorFlow's restart code 42), `--max_restarts` restarts every worker, as
a cluster scheduler would, and the run resumes from that checkpoint. On
several real hosts, set `TF_CONFIG` on each one yourself (README.md,
"Several hosts").
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from absl import flags

from experiments import configs
from experiments import logs

RESTART_CODE = 42  # PreemptionCheckpointHandler's exit code after its save.


def define_flags() -> flags.FlagValues:
  """The launcher's flags, apart from absl's global ones (the workers' flags)."""
  cluster_flags = flags.FlagValues()
  args = dict(flag_values=cluster_flags)
  flags.DEFINE_integer("workers", 2, "Worker processes.", lower_bound=1, **args)
  flags.DEFINE_enum("entry", None, ["transfer", "multitask"], "Ignored: every "
                    f"worker runs {configs.ENTRY_POINT}, which reads the kind "
                    "of run from its flags (kept for older commands).", **args)
  flags.DEFINE_integer("max_restarts", 0, "Restarts of the whole job after a "
                       "preemption (exit code 42).", lower_bound=0, **args)
  flags.DEFINE_float("timeout_secs", 3600.0, "Kill every worker after this "
                     "long.", **args)
  return cluster_flags


def free_ports(count: int) -> list:
  """`count` distinct free TCP ports on 127.0.0.1 (bound, read, released)."""
  sockets = []
  try:
    for _ in range(count):
      s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      s.bind(("127.0.0.1", 0))
      sockets.append(s)
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def tf_configs(count: int) -> list:
  """One `TF_CONFIG` (JSON text) per worker of a loopback cluster."""
  workers = [f"127.0.0.1:{port}" for port in free_ports(count)]
  return [json.dumps({"cluster": {"worker": workers},
                      "task": {"type": "worker", "index": i}})
          for i in range(count)]


def _relay(stream, prefix: str, sink) -> None:
  for line in iter(stream.readline, ""):
    sink.write(f"{prefix} {line}")
    sink.flush()


def start_workers(module: str, run_flags: list, count: int, sink=None) -> list:
  """Starts the workers; returns their `subprocess.Popen`s.

  Args:
    module: the entry point, e.g. "experiments.run".
    run_flags: its flags (`--strategy=multi_worker` is added).
    count: workers.
    sink: where the prefixed output lines go (`write`, `flush`); stdout.
  """
  sink = sink or sys.stdout
  processes = []
  for index, tf_config in enumerate(tf_configs(count)):
    env = dict(os.environ, TF_CONFIG=tf_config)
    process = subprocess.Popen(
        [sys.executable, "-m", module, *run_flags, "--strategy=multi_worker"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    threading.Thread(target=_relay, args=(process.stdout, f"[w{index}]", sink),
                     daemon=True).start()
    processes.append(process)
  return processes


def wait_for(processes: list, timeout_secs: float) -> list:
  """Waits for every worker; kills them all if one fails or time runs out."""
  deadline = time.monotonic() + timeout_secs
  while any(p.poll() is None for p in processes):
    failed = [p for p in processes
              if p.poll() not in (None, 0, RESTART_CODE)]
    if failed or time.monotonic() > deadline:
      time.sleep(2.0)  # Let the others report the error before they go.
      for p in processes:
        if p.poll() is None:
          p.send_signal(signal.SIGKILL)
      break
    time.sleep(0.2)
  return [p.wait() for p in processes]


def run_job(module: str, run_flags: list, workers: int, max_restarts: int,
            timeout_secs: float) -> int:
  """Runs (and after a preemption restarts) the job; returns its exit code."""
  for attempt in range(max_restarts + 1):
    codes = wait_for(start_workers(module, run_flags, workers), timeout_secs)
    print(f"[local_cluster] attempt {attempt + 1}: exit codes {codes}",
          flush=True)
    if all(code == 0 for code in codes):
      return 0
    if not all(code in (0, RESTART_CODE) for code in codes):
      return next(code for code in codes if code not in (0, RESTART_CODE)) or 1
  return RESTART_CODE


def main(argv) -> int:
  """`argv`: the launcher's flags, "--", then the flags every worker gets.

  Returns the job's exit code; exits with 1 (one `FATAL` line) on bad flags.
  """
  cluster_flags = define_flags()
  args = list(argv[1:])
  split = args.index("--") if "--" in args else len(args)
  try:
    cluster_flags([argv[0]] + args[:split])
  except flags.Error as e:
    logs.fatal(f"Flags parsing error: {e}")
  run_flags = args[split + 1:]
  if any(f.startswith("--strategy") for f in run_flags):
    logs.fatal("local_cluster sets --strategy=multi_worker itself.")
  return run_job(configs.ENTRY_POINT, run_flags, cluster_flags.workers,
                 cluster_flags.max_restarts, cluster_flags.timeout_secs)


if __name__ == "__main__":
  sys.exit(main(sys.argv))
