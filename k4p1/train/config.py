"""`TransferConfig`: every setting of a single-task transfer run.

Defaults are the paper's recipe (TF-slim's MobileNetV2 training script, see
../shared/PAPER.md): RMSProp (rho 0.9, momentum 0.9, epsilon 1.0), learning
rate 0.045 for a batch of 96 scaled linearly with the global batch, x0.98
every 2.5 epochs (staircase), label smoothing 0.1, weight decay 4e-5 on
trainable kernels. Experiment configs (`experiments/configs/*.py`) override
some fields; command-line flags override those.
"""

import dataclasses
import os
from typing import Any, Mapping, Optional

from k4p1.train import optimizers
from k4p1.train import performance
from k4p1.train import strategy as strategy_lib

OPTIMIZERS = optimizers.OPTIMIZERS
STRATEGIES = strategy_lib.STRATEGIES
BN_STATS = ("task", "frozen")
MIXED_PRECISION = performance.MIXED_PRECISION
# Epochs trained when neither `train_steps` nor `train_epochs` is set. The
# paper does not state its fine-tuning length; see BUILD_NOTES.md.
DEFAULT_TRAIN_EPOCHS = 30.0
# Fields that identify a run: a rerun in the same workdir must agree on them.
IDENTITY_FIELDS = ("model", "weights", "alpha", "image_size", "dataset", "task",
                   "patch", "bn_stats", "add_missing_scales")
_WEIGHT_PREFIXES = ("slim:", "ssd_tf1:", "ssd_tf2:")


@dataclasses.dataclass
class TransferConfig:
  """Settings of one transfer-learning run (one task, one patch).

  Attributes:
    workdir: where checkpoints, TensorBoard logs, the patch and JSON go.
    model: architecture, one of `k4p1.models.ARCHITECTURES`.
    weights: backbone weights: None (random), "imagenet", a Keras weights
      file, or "slim:<ckpt>" / "ssd_tf1:<ckpt>" / "ssd_tf2:<ckpt>".
    alpha: width multiplier (MobileNets).
    image_size: input size; None: the dataset's and architecture's default
      (`k4p1.data.default_image_size`).
    patch: patch spec, e.g. "scale_bias+logits" (`k4p1.patches.PatchSpec`).
    bn_stats: "task" (patch BN layers re-estimate their own statistics) or
      "frozen" (they keep the base's statistics).
    bn_momentum: if set, the momentum of every BN layer that runs in training
      mode (the task's patch BN layers); None keeps the model's (0.999 for
      Keras' MobileNetV2). With PreciseBN on it only shapes the statistics of
      mid-run checkpoints.
    precise_bn_batches: PreciseBN (`k4p1.train.precise_bn`): before every
      evaluation and before the patch is written, the moving statistics of
      every BN layer the run trains in training mode are replaced by
      population statistics over this many batches of the training split
      (eval preprocessing, shuffled; the whole split if it is smaller).
      0: off, keep the moving averages (an ablation: short runs then
      evaluate with mostly the base's statistics).
    add_missing_scales: give scale-less BN layers (InceptionV3) gammas.
    dataset: registry name, optionally with a label subset ("mnist5k:5-9").
    task: task name (patch layer suffix and patch file name); None: the
      dataset name with ':' and ',' replaced by '_'.
    data_dir: TFDS data directory (or a directory with `mnist_5k.csv.gz`).
    batch_size: global batch size (all replicas together).
    train_steps: optimizer steps to train; exclusive with `train_epochs`.
    train_epochs: epochs to train (rounded up to whole steps).
    learning_rate: learning rate for a global batch of `lr_reference_batch`;
      the run uses learning_rate * batch_size / lr_reference_batch.
    lr_reference_batch: the batch size `learning_rate` is given for.
    lr_decay_rate: factor applied every `lr_decay_epochs` (staircase).
    lr_decay_epochs: epochs between decays.
    optimizer: one of `OPTIMIZERS`.
    momentum: momentum of RMSProp and SGD.
    rmsprop_rho: RMSProp's discounting factor.
    epsilon: optimizer epsilon; None: 1.0 for RMSProp (the paper's), Keras'
      default (1e-7) for Adam.
    label_smoothing: label smoothing of the cross-entropy, in [0, 1).
    weight_decay: L2 coefficient on trainable kernels (not BN, not biases).
    eval_every: evaluate every this many steps (0: only at the end).
    checkpoint_every: checkpoint every this many steps (0: only at the end).
    keep_checkpoints: checkpoints kept by the CheckpointManager.
    summary_every: write training scalars every this many steps.
    log_every_secs: log progress at least this often.
    seed: seed of initialisation, shuffling and augmentation.
    deterministic: TensorFlow op determinism
      (`tf.config.experimental.enable_op_determinism`, for the whole
      process): the same command gives the same weights, bit for bit, on the
      same build and machine. Off by default (some ops are slower).
    strategy: one of `STRATEGIES`.
    tpu_address: TPU name or address (strategy "tpu").
    jit_compile: compile the train step with XLA: "auto" (on with a GPU or
      TPU, off on CPU, where XLA is slower), True or False. `resolved()`
      turns "auto" into a bool.
    mixed_precision: "none", "mixed_float16" (with dynamic loss scaling) or
      "mixed_bfloat16": layers compute in half precision, variables and the
      loss stay float32.
    cache_features: `logits` patches only: compute the frozen backbone's
      pooled features of each training image once and train the head on them
      (valid because nothing before the head trains; the cached images are
      preprocessed without augmentation, so this changes the data the head
      sees when the dataset augments). See `k4p1.train.features_cache`.
    prefetch_to_device: under a strategy, prefetch each replica's batches to
      its device (`tf.distribute.InputOptions(experimental_fetch_to_device)`)
      so host-to-device copies overlap the step.
  """
  workdir: str = ""
  model: str = "mobilenet_v2"
  weights: Optional[str] = "imagenet"
  alpha: float = 1.0
  image_size: Optional[int] = None
  patch: str = "scale_bias+logits"
  bn_stats: str = "task"
  bn_momentum: Optional[float] = None
  precise_bn_batches: int = 200
  add_missing_scales: bool = False
  dataset: str = "cifar100"
  task: Optional[str] = None
  data_dir: Optional[str] = None
  batch_size: int = 96
  train_steps: Optional[int] = None
  train_epochs: Optional[float] = None
  learning_rate: float = 0.045
  lr_reference_batch: int = 96
  lr_decay_rate: float = 0.98
  lr_decay_epochs: float = 2.5
  optimizer: str = "rmsprop"
  momentum: float = 0.9
  rmsprop_rho: float = 0.9
  epsilon: Optional[float] = None
  label_smoothing: float = 0.1
  weight_decay: float = 4e-5
  eval_every: int = 1000
  checkpoint_every: int = 500
  keep_checkpoints: int = 3
  summary_every: int = 50
  log_every_secs: float = 30.0
  seed: int = 0
  deterministic: bool = False
  strategy: str = "default"
  tpu_address: Optional[str] = None
  jit_compile: Any = "auto"
  mixed_precision: str = "none"
  cache_features: bool = False
  prefetch_to_device: bool = True

  @classmethod
  def field_names(cls) -> tuple:
    return tuple(f.name for f in dataclasses.fields(cls))

  def replace(self, **overrides) -> "TransferConfig":
    """Returns a copy with `overrides` applied.

    Raises:
      ValueError: an override names no field.
    """
    unknown = sorted(set(overrides) - set(self.field_names()))
    if unknown:
      raise ValueError(f"Unknown config field(s) {unknown}; valid fields: "
                       f"{', '.join(self.field_names())}.")
    return dataclasses.replace(self, **overrides)

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> "TransferConfig":
    """Builds a config from defaults overridden by `values` (unknown keys raise)."""
    return cls().replace(**dict(values))

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  def resolved(self) -> "TransferConfig":
    """Validates, then fills the fields whose default depends on others.

    Returns:
      A copy with `weights`, `image_size`, `task`, `epsilon` and the training
      length (`train_epochs` when neither length is given) made explicit.

    Raises:
      ValueError: see `validate`.
    """
    self.validate()
    from k4p1 import data  # pylint: disable=g-import-not-at-top
    from k4p1 import patches  # pylint: disable=g-import-not-at-top
    # Canonical forms, so that a rerun spelling them differently still matches.
    config = self.replace(weights=normalize_weights(self.weights),
                          patch=str(patches.PatchSpec.parse(self.patch)))
    if config.image_size is None:
      config = config.replace(
          image_size=data.default_image_size(config.dataset, config.model))
    if config.task is None:
      config = config.replace(task=default_task_name(config.dataset))
    if config.epsilon is None:
      config = config.replace(epsilon=1.0 if config.optimizer == "rmsprop" else 1e-7)
    if config.train_steps is None and config.train_epochs is None:
      config = config.replace(train_epochs=DEFAULT_TRAIN_EPOCHS)
    config = config.replace(
        jit_compile=performance.resolve_jit_compile(config.jit_compile))
    return config

  def validate(self) -> None:
    """Checks every field before anything is built.

    Raises:
      ValueError: naming the first bad field, its value and the valid choices.
    """
    # Imported here: validation needs the registries, plain configs do not.
    from k4p1 import data  # pylint: disable=g-import-not-at-top
    from k4p1 import models  # pylint: disable=g-import-not-at-top
    from k4p1 import patches  # pylint: disable=g-import-not-at-top
    if not self.workdir:
      raise ValueError("workdir is required (the run's output directory).")
    arch = models.get_architecture(self.model)  # Raises with the choices.
    patches.PatchSpec.parse(self.patch)
    data.get_dataset_info(self.dataset)
    _check_choice("strategy", self.strategy, STRATEGIES)
    _check_choice("optimizer", self.optimizer, OPTIMIZERS)
    _check_choice("bn_stats", self.bn_stats, BN_STATS)
    _check_weights(self.weights)
    if self.image_size is not None:
      _check_int("image_size", self.image_size, minimum=arch.min_image_size)
    if self.alpha != 1.0 and not arch.supports_alpha:
      raise ValueError(f"alpha={self.alpha} is not supported by {self.model}; "
                       "only MobileNets take a width multiplier.")
    if self.task is not None:
      default_task_name(self.task)  # Same character rules as derived names.
    _check_int("batch_size", self.batch_size, minimum=1)
    if self.train_steps is not None and self.train_epochs is not None:
      raise ValueError(f"Set train_steps ({self.train_steps}) or train_epochs "
                       f"({self.train_epochs}), not both.")
    if self.train_steps is not None:
      _check_int("train_steps", self.train_steps, minimum=1)
    if self.train_epochs is not None and not self.train_epochs > 0:
      raise ValueError(f"train_epochs must be > 0, got {self.train_epochs!r}.")
    for name in ("learning_rate", "lr_decay_epochs", "lr_decay_rate"):
      if not getattr(self, name) > 0:
        raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}.")
    _check_int("lr_reference_batch", self.lr_reference_batch, minimum=1)
    if not 0.0 <= self.label_smoothing < 1.0:
      raise ValueError(f"label_smoothing must be in [0, 1), got "
                       f"{self.label_smoothing!r}.")
    if self.weight_decay < 0:
      raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}.")
    if not 0.0 <= self.momentum < 1.0:
      raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}.")
    if self.bn_momentum is not None and not 0.0 <= self.bn_momentum < 1.0:
      raise ValueError(f"bn_momentum must be in [0, 1) or None, got "
                       f"{self.bn_momentum!r}.")
    _check_int("precise_bn_batches", self.precise_bn_batches, minimum=0)
    if self.epsilon is not None and not self.epsilon > 0:
      raise ValueError(f"epsilon must be > 0, got {self.epsilon!r}.")
    for name in ("eval_every", "checkpoint_every"):
      _check_int(name, getattr(self, name), minimum=0)
    _check_int("keep_checkpoints", self.keep_checkpoints, minimum=1)
    _check_int("summary_every", self.summary_every, minimum=1)
    if not self.log_every_secs > 0:
      raise ValueError(f"log_every_secs must be > 0, got {self.log_every_secs!r}.")
    performance.resolve_jit_compile(self.jit_compile)  # Raises with choices.
    _check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
    if self.cache_features and str(patches.PatchSpec.parse(self.patch)) != "logits":
      raise ValueError(f"cache_features needs patch 'logits' (only the head "
                       f"trains), not {self.patch!r}.")
    if self.tpu_address and self.strategy != "tpu":
      raise ValueError(f"tpu_address={self.tpu_address!r} needs strategy "
                       f"'tpu', not {self.strategy!r}.")


def normalize_weights(weights):
  """Maps the command line's "none" (or "") to None; keeps anything else."""
  if weights is None or (isinstance(weights, str) and
                         weights.strip().lower() in ("", "none")):
    return None
  return weights


def default_task_name(dataset: str) -> str:
  """A task name safe in layer names and file names: "mnist5k:5-9" -> "mnist5k_5-9".

  Raises:
    ValueError: the name still has characters outside [A-Za-z0-9_.-].
  """
  name = dataset.replace(":", "_").replace(",", "_")
  if not name or not all(c.isalnum() or c in "_.-" for c in name):
    raise ValueError(f"Task name {name!r} (from {dataset!r}) must use only "
                     "letters, digits and '_.-'.")
  return name


def _check_choice(field: str, value, choices) -> None:
  if value not in choices:
    raise ValueError(f"Unknown {field} {value!r}; valid choices: "
                     f"{', '.join(choices)}.")


def _check_int(field: str, value, minimum: int) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ValueError(f"{field} must be an integer >= {minimum}, got {value!r}.")


def _check_weights(weights) -> None:
  weights = normalize_weights(weights)
  if weights is None or weights == "imagenet":
    return
  if not isinstance(weights, str):
    raise ValueError(f"weights={weights!r} is invalid; valid choices: none, "
                     "imagenet, a .keras/.h5/.weights.h5 path, or "
                     "slim:<ckpt>, ssd_tf1:<ckpt>, ssd_tf2:<ckpt>.")
  if weights.startswith(_WEIGHT_PREFIXES):
    return
  if not os.path.exists(weights):
    raise ValueError(f"weights={weights!r}: no such file. Valid choices: none, "
                     "imagenet, a .keras/.h5/.weights.h5 path, or "
                     "slim:<ckpt>, ssd_tf1:<ckpt>, ssd_tf2:<ckpt>.")
