"""`tf.distribute` strategies by name.

A run names its strategy with a string (`--strategy`), so the same script runs
on a laptop, on several GPUs, on several workers and on a TPU. Every strategy
is built here and nowhere else.
"""

from typing import Optional

from absl import logging
import tensorflow as tf

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker", "tpu")


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
      for another strategy.
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
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
  else:
    address = "" if tpu_address in (None, "local") else tpu_address
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    strategy = tf.distribute.TPUStrategy(resolver)
  logging.info("Strategy %s: %s with %d replica(s).", name,
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
