"""`tf.distribute` strategies by name.

A run names its strategy with a string (`--strategy`), so the same script runs
on a laptop, on several GPUs, on several workers and on a TPU. Every strategy
is built here and nowhere else.
"""

import json
import os
from typing import Optional

from absl import logging
import tensorflow as tf

from k4p1.core import choices

STRATEGIES = choices.STRATEGIES
TF_CONFIG_EXAMPLE = ('TF_CONFIG=\'{"cluster": {"worker": ["host0:2222", '
                     '"host1:2222"]}, "task": {"type": "worker", "index": 0}}\'')


class ClusterConfigError(ValueError):
  """TF_CONFIG is missing or malformed for a multi-worker run."""


def check_tf_config(value: Optional[str]) -> dict:
  """Parses the `TF_CONFIG` of a multi-worker run; raises on anything wrong.

  Returns:
    The parsed dict: {"cluster": {"worker": [...], ...}, "task": {...}}.

  Raises:
    ClusterConfigError: naming the variable, what is wrong and an example.
  """
  def fail(problem):
    raise ClusterConfigError(
        f"--strategy=multi_worker reads the cluster from the TF_CONFIG "
        f"environment variable, which {problem}. Set it on every worker, e.g. "
        f"{TF_CONFIG_EXAMPLE} (index 1 on the second host); "
        "python -m experiments.local_cluster does it on one machine.")
  if not value:
    fail("is not set")
  try:
    parsed = json.loads(value)
  except json.JSONDecodeError as e:
    fail(f"is not valid JSON ({e})")
  if not isinstance(parsed, dict) or not isinstance(parsed.get("cluster"), dict):
    fail(f"has no \"cluster\" object: {value!r}")
  workers = parsed["cluster"].get("worker", [])
  chiefs = parsed["cluster"].get("chief", [])
  if not isinstance(workers, list) or not workers + (chiefs or []):
    fail(f"lists no workers: {value!r}")
  task = parsed.get("task")
  if not isinstance(task, dict) or task.get("type") not in parsed["cluster"]:
    fail(f"has no \"task\" of a type in the cluster: {value!r}")
  index = task.get("index")
  if (not isinstance(index, int) or isinstance(index, bool) or
      not 0 <= index < len(parsed["cluster"][task["type"]])):
    fail(f"has task index {index!r}, not one of the "
         f"{len(parsed['cluster'][task['type']])} {task['type']} addresses")
  return parsed


def _local_devices() -> list:
  """Local GPUs if any, else every logical CPU device."""
  gpus = tf.config.list_logical_devices("GPU")
  if gpus:
    return [d.name for d in gpus]
  return [d.name for d in tf.config.list_logical_devices("CPU")]


def build_strategy(name: str,
                   tpu_address: Optional[str] = None) -> tf.distribute.Strategy:
  """Returns the `tf.distribute.Strategy` called `name`.

  * `default`: TensorFlow's default (no-op) strategy, one device.
  * `one_device`: `OneDeviceStrategy` on the first GPU, else the CPU.
  * `mirrored`: `MirroredStrategy` over every local GPU; on a machine without
    GPUs, over every logical CPU device (tests split the CPU in two).
  * `multi_worker`: `MultiWorkerMirroredStrategy`; the cluster comes from the
    `TF_CONFIG` environment variable.
  * `tpu`: `TPUStrategy` on the TPU at `tpu_address` (None or "" or "local":
    the TPU attached to this VM).

  Args:
    name: one of `STRATEGIES`.
    tpu_address: the TPU's name or grpc address, for `tpu` only.

  Returns:
    The strategy; build models, optimizers and checkpoints under its scope.

  Raises:
    ValueError: `name` is not one of `STRATEGIES`, or `tpu_address` is given
      for another strategy; `ClusterConfigError` for a missing or malformed
      `TF_CONFIG` under `multi_worker`.
    RuntimeError: `multi_worker` after TensorFlow's context was initialised.
  """
  if name not in STRATEGIES:
    raise ValueError(f"Unknown strategy {name!r}; valid choices: "
                     f"{', '.join(STRATEGIES)}.")
  if tpu_address and name != "tpu":
    raise ValueError(f"tpu_address={tpu_address!r} only applies to "
                     f"strategy 'tpu', not {name!r}.")
  if name == "default":
    strategy = tf.distribute.get_strategy()
  elif name == "one_device":
    gpus = tf.config.list_logical_devices("GPU")
    strategy = tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
  elif name == "mirrored":
    devices = _local_devices()
    # On CPUs, TF 2.21's default (RING collectives) numbers its collective
    # instances per strategy object, so two MirroredStrategy objects in one
    # process (tests, the demo) collide; reducing to one device does not.
    cross_device_ops = (None if any("GPU" in d.upper() for d in devices)
                        else tf.distribute.ReductionToOneDevice())
    strategy = tf.distribute.MirroredStrategy(
        devices=devices, cross_device_ops=cross_device_ops)
  elif name == "multi_worker":
    check_tf_config(os.environ.get("TF_CONFIG"))
    try:
      strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as e:  # "Collective ops must be configured at ..."
      raise RuntimeError(
          "The multi_worker strategy must be built before any other "
          "TensorFlow work in the process (TensorFlow configures collective "
          "ops at start-up): build it first with "
          "k4p1.train.build_strategy('multi_worker') and pass it to "
          f"train.run(config, strategy=...). TensorFlow said: {e}") from e
  else:
    address = "" if tpu_address in (None, "local") else tpu_address
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    strategy = tf.distribute.TPUStrategy(resolver)
  logging.debug("Strategy %s: %s with %d replica(s).", name,
                type(strategy).__name__, strategy.num_replicas_in_sync)
  return strategy


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the run's files (checkpoints, patches, JSON).

  Only one worker of a multi-worker run writes; the others write their
  (required) checkpoints to a scratch directory.
  """
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True
  return resolver.task_type == "chief" or (
      resolver.task_type == "worker" and resolver.task_id == 0 and
      "chief" not in resolver.cluster_spec().as_dict())
