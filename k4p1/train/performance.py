"""Speed settings of a run: XLA, mixed precision, device prefetch.

```python
jit = performance.resolve_jit_compile("auto")          # False on a CPU-only host
performance.set_mixed_precision("mixed_float16")        # before building models
optimizer = performance.wrap_optimizer(optimizer, "mixed_float16")  # loss scaling
```
"""

import os

import keras
import tensorflow as tf

from k4p1.core import choices

MIXED_PRECISION = choices.MIXED_PRECISION
JIT_COMPILE = ("auto", True, False)


def seed_everything(seed: int, deterministic: bool = False) -> None:
  """Seeds Python, NumPy, TensorFlow and Keras; optionally op determinism.

  Op determinism is process-wide and cannot be switched off again, so it is
  only turned on, never off.
  """
  keras.utils.set_random_seed(seed)
  if deterministic:
    tf.config.experimental.enable_op_determinism()


def runtime() -> dict:
  """TensorFlow's version and CPU kernels in this process (results.json's).

  TensorFlow turns its oneDNN CPU kernels on by default only on CPUs with
  AVX-512 VNNI/BF16 or AMX, and `TF_ENABLE_ONEDNN_OPTS` overrides that at
  import; they round differently from the Eigen kernels, so a run records
  which ones computed it. k4p1 keeps TensorFlow's choice (BUILD_NOTES.md,
  "Training speed": oneDNN is faster in every training step measured, slower
  in PreciseBN's pass at 64-96 px).

  Returns:
    {"tensorflow": version, "keras": version, "onednn": whether oneDNN
    kernels are on (None: this TensorFlow does not say),
    "TF_ENABLE_ONEDNN_OPTS": the variable as set, or None}.
  """
  try:  # TensorFlow's own flag; no public API reads it.
    from tensorflow.python.util import _pywrap_util_port  # pylint: disable=g-import-not-at-top
    onednn = bool(_pywrap_util_port.IsMklEnabled())
  except (ImportError, AttributeError):
    onednn = None
  return {"tensorflow": tf.__version__, "keras": keras.__version__,
          "onednn": onednn,
          "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS")}


def has_accelerator() -> bool:
  """Whether TensorFlow sees a GPU or TPU.

  Physical devices: listing them does not initialise TensorFlow's context,
  which a multi-worker strategy must configure first.
  """
  return any(d.device_type in ("GPU", "TPU")
             for d in tf.config.list_physical_devices())


def resolve_jit_compile(jit_compile) -> bool:
  """`"auto"` -> on with a GPU/TPU, off on CPU (XLA is slower there); else bool.

  Raises:
    ValueError: not "auto", True, False (or "true"/"false").
  """
  if isinstance(jit_compile, str):
    value = jit_compile.strip().lower()
    if value == "auto":
      return has_accelerator()
    if value in ("true", "false"):
      return value == "true"
  elif isinstance(jit_compile, bool):
    return jit_compile
  raise ValueError(f"jit_compile={jit_compile!r} is invalid; valid choices: "
                   "auto, true, false.")


def check_mixed_precision(policy: str) -> None:
  if policy not in MIXED_PRECISION:
    raise ValueError(f"Unknown mixed_precision {policy!r}; valid choices: "
                     f"{', '.join(MIXED_PRECISION)}.")


def set_mixed_precision(policy: str) -> str:
  """Sets Keras' global dtype policy ("none": float32); returns the previous.

  Call before building the models. Variables stay float32; layers compute in
  float16/bfloat16; BatchNormalization normalises in float32 and the training
  step casts logits to float32 before the loss.
  """
  check_mixed_precision(policy)
  previous = keras.config.dtype_policy().name
  keras.config.set_dtype_policy("float32" if policy == "none" else policy)
  return previous


def wrap_optimizer(optimizer: keras.optimizers.Optimizer,
                   policy: str) -> keras.optimizers.Optimizer:
  """Adds dynamic loss scaling for "mixed_float16" (float16 gradients underflow).

  `make_train_step` scales the loss of a `LossScaleOptimizer`; the optimizer
  unscales the gradients and skips steps whose gradients are not finite.
  bfloat16 has float32's exponent range and needs no loss scaling.
  """
  check_mixed_precision(policy)
  if policy == "mixed_float16" and not isinstance(
      optimizer, keras.optimizers.LossScaleOptimizer):
    return keras.optimizers.LossScaleOptimizer(optimizer)
  return optimizer


INPUT_PIPELINES = choices.INPUT_PIPELINES


def input_options(prefetch_to_device: bool = True,
                  input_pipeline: str = "per_worker",
                  strategy=None) -> tf.distribute.InputOptions:
  """Input options of a distributed training dataset.

  With `prefetch_to_device`, each replica's next batches are copied to its
  device while the current step runs (two per replica); without, batches stay
  on the host until the step reads them. `input_pipeline="per_replica"` builds
  one pipeline per replica, each reading its own shard
  (`InputReplicationMode.PER_REPLICA`; batches stay on the host). A
  multi-worker strategy only has per-worker pipelines: with one replica per
  worker they are the same thing; with more, "per_replica" raises.
  """
  if (input_pipeline == "per_replica" and
      isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)):
    if len(strategy.extended.worker_devices) > 1:
      raise ValueError("input_pipeline='per_replica' needs one replica per "
                       "worker under the multi_worker strategy; this worker "
                       f"has {len(strategy.extended.worker_devices)}.")
    input_pipeline = "per_worker"
  if input_pipeline == "per_replica":
    return tf.distribute.InputOptions(
        experimental_replication_mode=tf.distribute.InputReplicationMode.PER_REPLICA,
        experimental_fetch_to_device=False,
        experimental_place_dataset_on_device=False)
  return tf.distribute.InputOptions(
      experimental_fetch_to_device=prefetch_to_device,
      experimental_per_replica_buffer_size=2 if prefetch_to_device else 1)
