"""Multi-worker runs with real worker processes on 127.0.0.1.

Two workers (`experiments.local_cluster`, free loopback ports, each process
bounded in time) run `MultiWorkerMirroredStrategy`. Checked: both workers end
with the same weights (every worker logs a digest of every variable), only
the chief writes the run's files, the patches match a one-process mirrored run
on two logical CPUs that reads its data the same way (one pipeline per
replica), a SIGKILLed job restarted by hand resumes to the exact step count,
and a SIGTERM makes the cluster save and exit so that the restart loses no
step. The shards of the workers' input pipelines are disjoint.
"""

import glob
import json
import os
import re
import signal
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from experiments import local_cluster
from k4p1 import data
from k4p1 import models
from k4p1 import patches
from k4p1 import train
from k4p1.train import performance
from k4p1.train import strategy as strategy_lib

TIMEOUT_S = 420  # Per job; two workers share this machine's cores.
COMMON = dict(model="mobilenet_v2", alpha=0.35, image_size=32, weights="none",
              batch_size=32, precise_bn_batches=100, eval_every=0,
              summary_every=5, seed=0)


class _Log:
  """A thread-safe sink for the workers' prefixed output."""

  def __init__(self):
    self.lines, self._lock = [], threading.Lock()

  def write(self, text):
    with self._lock:
      self.lines.append(text)

  def flush(self):
    pass

  def text(self):
    with self._lock:
      return "".join(self.lines)


def _flags(workdir, **settings):
  values = dict(COMMON, workdir=str(workdir), **settings)
  return [f"--{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
          for k, v in values.items()]


def _start(workdir, entry="transfer", **settings):
  log = _Log()
  processes = local_cluster.start_workers(
      f"experiments.{entry}", _flags(workdir, **settings), 2, sink=log)
  return processes, log


def _digests(log):
  """{worker: {task: digest}} from the workers' "Weights digest" lines."""
  found = {}
  for worker, task, digest in re.findall(
      r"\[w(\d)\].*Weights digest of (\S+): ([0-9a-f]{64})", log.text()):
    found.setdefault(worker, {})[task] = digest
  return found


def _wait_for_checkpoint(directory, step, processes):
  deadline = time.monotonic() + TIMEOUT_S
  pattern = os.path.join(directory, "checkpoints", "ckpt-*.index")
  while time.monotonic() < deadline:
    steps = [int(re.search(r"ckpt-(\d+)", p).group(1)) for p in glob.glob(pattern)]
    if any(s >= step for s in steps):
      return max(steps)
    assert all(p.poll() is None for p in processes), "a worker ended early"
    time.sleep(0.2)
  raise AssertionError(f"no checkpoint at step >= {step} in {TIMEOUT_S} s")


def _patch_arrays(path):
  return patches.read_patch_file(str(path))[1]


@pytest.mark.slow
def test_two_workers_multitask_match_a_mirrored_run_and_only_the_chief_writes(tmp_path):
  settings = dict(tasks=("mnist5k:0-1", "mnist5k:2-3"), train_steps=8,
                  input_pipeline="per_replica", checkpoint_every=4)
  processes, log = _start(tmp_path / "mw", entry="multitask", **settings)
  codes = local_cluster.wait_for(processes, TIMEOUT_S)
  assert codes == [0, 0], log.text()[-3000:]
  digests = _digests(log)
  assert set(digests) == {"0", "1"} and digests["0"] == digests["1"]
  assert set(digests["0"]) == {"mnist5k_0-1", "mnist5k_2-3"}
  run = tmp_path / "mw"
  assert (run / "results.json").is_file() and (run / "export").is_dir()
  # The non-chief saved its (required) checkpoints to scratch, then removed it.
  assert not glob.glob(str(run / "checkpoints" / ".worker_*"))
  assert sorted(os.listdir(run)) == ["backbone.weights.h5", "checkpoints",
                                     "config.json", "export", "patches",
                                     "results.json", "tasks.json", "tensorboard"]

  mirrored = train.run(train.RunConfig(
      workdir=str(tmp_path / "mirrored"), strategy="mirrored",
      **dict(COMMON, weights=None), **settings))
  assert mirrored["strategy"]["replicas"] == 2
  for name in ("mnist5k_0-1", "mnist5k_2-3"):
    ours = _patch_arrays(run / "patches" / f"{name}.safetensors")
    theirs = _patch_arrays(tmp_path / "mirrored" / "patches" / f"{name}.safetensors")
    assert set(ours) == set(theirs)
    for key in ours:  # Same data per replica; only summation order differs.
      np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-3, atol=1e-4,
                                 err_msg=key)


@pytest.mark.slow
def test_killed_job_resumes_and_preempted_job_loses_no_step(tmp_path):
  run = tmp_path / "ft"
  settings = dict(dataset="mnist5k:0-4", patch="scale_bias+logits",
                  train_steps=30, checkpoint_every=10,
                  log_every_secs=0.01)  # A progress line per step.
  # 1. SIGKILL a worker after the first checkpoint; the launcher stops the job.
  processes, _ = _start(run, **settings)
  assert _wait_for_checkpoint(run, 10, processes) >= 10
  processes[1].send_signal(signal.SIGKILL)
  codes = local_cluster.wait_for(processes, TIMEOUT_S)
  assert codes[1] == -signal.SIGKILL and codes[0] != 0
  assert not (run / "results.json").exists()
  killed_at = int(re.search(r"ckpt-(\d+)", tf.train.latest_checkpoint(
      str(run / "checkpoints"))).group(1))

  # 2. Restart every worker: it resumes there. SIGTERM one after the next
  #    checkpoint: the cluster saves at one step and exits with code 42.
  processes, log = _start(run, **settings)
  _wait_for_checkpoint(run, killed_at + 1, processes)
  processes[1].send_signal(signal.SIGTERM)
  codes = local_cluster.wait_for(processes, TIMEOUT_S)
  assert codes == [local_cluster.RESTART_CODE] * 2, log.text()[-3000:]
  assert f"resuming at step {killed_at}" in log.text()
  preempted_at = int(re.search(r"ckpt-(\d+)", tf.train.latest_checkpoint(
      str(run / "checkpoints"))).group(1))
  completed = max(int(s) for s in re.findall(r"\[w\d\].*step (\d+)/30:", log.text()))
  assert preempted_at >= completed > killed_at  # No completed step is lost.

  # 3. The restarted job ends at the requested step with a loadable patch.
  processes, log = _start(run, **settings)
  assert local_cluster.wait_for(processes, TIMEOUT_S) == [0, 0], log.text()[-3000:]
  digests = _digests(log)
  assert digests["0"] == digests["1"]
  results = json.loads((run / "results.json").read_text())
  assert results["resumed_from_step"] == preempted_at
  assert results["steps"] == results["optimizer_steps"] == 30
  assert results["strategy"] == {"name": "multi_worker", "replicas": 2}
  backbone = models.build_backbone("mobilenet_v2", 32, weights=None, alpha=0.35)
  # The run's base is random (weights none): load onto another random base.
  task = patches.load_patch(backbone, str(run / "patches" / "mnist5k_0-4.safetensors"),
                            strict=False)
  assert task(np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 5)


def test_worker_shards_are_disjoint_and_cover_the_split():
  """Two input pipelines (one per worker, or per replica) read disjoint shards."""
  strategy = train.build_strategy("mirrored")
  assert strategy.num_replicas_in_sync == 2
  dataset = data.build_dataset(
      "mnist5k:0-1", "test", global_batch_size=16, image_size=32,
      training=False, strategy=strategy,
      input_options=performance.input_options(input_pipeline="per_replica"), architecture="mobilenet_v2")
  seen = [[], []]
  for images, _ in dataset:
    for replica, batch in enumerate(strategy.experimental_local_results(images)):
      seen[replica] += [hash(image.tobytes()) for image in batch.numpy()]
  assert seen[0] and seen[1]
  assert not set(seen[0]) & set(seen[1])
  assert len(seen[0]) + len(seen[1]) == data.get_dataset_info(
      "mnist5k:0-1").num_eval_examples


@pytest.mark.parametrize("value, fragment", [
    (None, "is not set"),
    ("{not json", "is not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', 'no "cluster"'),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 2}}',
     "task index 2"),
])
def test_tf_config_errors_name_the_variable_and_an_example(value, fragment):
  with pytest.raises(train.ClusterConfigError, match=fragment) as error:
    strategy_lib.check_tf_config(value)
  assert "TF_CONFIG" in str(error.value) and '"worker"' in str(error.value)


def test_local_cluster_sets_its_own_strategy_and_free_ports(capsys):
  with pytest.raises(SystemExit) as exit_info:
    local_cluster.main(["local_cluster", "--", "--strategy=mirrored"])
  assert exit_info.value.code == 1
  assert "sets --strategy=multi_worker itself" in capsys.readouterr().err
  configs = [json.loads(c) for c in local_cluster.tf_configs(3)]
  workers = configs[0]["cluster"]["worker"]
  assert len(set(workers)) == 3 and all(w.startswith("127.0.0.1:") for w in workers)
  assert [c["task"]["index"] for c in configs] == [0, 1, 2]


def test_multi_worker_after_other_tensorflow_work_names_the_fix(tmp_path):
  # In a fresh process: building the strategy configures collectives, which
  # must not happen in the test process.
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  code = ("import tensorflow as tf\n"
          "from k4p1.train import strategy\n"
          "tf.constant(1.0) + 1\n"
          "try:\n"
          "  strategy.build_strategy('multi_worker')\n"
          "except RuntimeError as e:\n"
          "  print('ERROR', e)\n")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_CONFIG=json.dumps(
      {"cluster": {"worker": ["127.0.0.1:1"]},
       "task": {"type": "worker", "index": 0}}))
  out = subprocess.run([sys.executable, "-c", code], env=env, text=True,
                       capture_output=True, timeout=300, check=True).stdout
  assert "ERROR The multi_worker strategy must be built before any other" in out
  assert "train.run(config, strategy=...)" in out
