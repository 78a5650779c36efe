"""`RunConfig`: every setting of every run, each declared once.

One config serves every kind of run (`k4p1.train.run`):

* transfer: one dataset (`dataset`), one task patch;
* multitask: K datasets (`tasks`), one patch and one head per task on one
  shared base (`shared="trained"` also trains the base);
* multires: one dataset at several sizes (`resolutions`), one patch per size
  and one head shared by every size;
* sequential (`sequential=True`): adds `tasks` to the finished multi-task run
  in `workdir`, training only their patches;
* pretrain (`pretrain=True`): trains every weight of a backbone and a new head
  on `dataset` and saves the backbone.

Defaults are the paper's recipe (`k4p1.core.defaults`; TF-slim's MobileNetV2
training script, see ../shared/PAPER.md): RMSProp (rho 0.9, momentum 0.9, epsilon 1.0), learning
rate 0.045 for a batch of 96 scaled linearly with the batch (0.0142 for a
`lora` patch without a BN kind: `defaults.learning_rate`), x0.98 every 2.5
epochs (staircase), label smoothing 0.1, weight decay 4e-5 on trainable
kernels. Each field's meaning is its `help` metadata, which is also the help
of the command-line flag generated from it (`experiments/config_flags.py`).
Validation lives in `k4p1.train.plan.resolve`, which runs once per run.
The config is plain data: it lives in the TensorFlow-free core, so that the
experiment configs, the launcher and the flags read it without TensorFlow
(`k4p1.train.config` and `k4p1.train` re-export it).
"""

import dataclasses
from typing import Any, Mapping, Optional

from k4p1.core import choices
from k4p1.core import defaults
from k4p1.core import kinds

DEFAULT_TRAIN_EPOCHS = defaults.TRAIN_EPOCHS
# Fields that identify a run: a rerun in the same workdir must agree on them
# (the others, e.g. the number of steps, may change: the run resumes).
IDENTITY_FIELDS = ("model", "weights", "alpha", "dataset", "task", "image_size",
                   "tasks", "task_names",
                   "image_sizes", "resolutions", "patch", "bn_stats", "bn_init",
                   "add_missing_scales", "shared", "task_sampling", "sequential",
                   "pretrain", "eval_fraction", "image_key", "label_key",
                   "taps_threshold", "lora_rank", "lora_alpha",
                   "validation_fraction")

# A setting given on top of others (a flag over a config file, a table row
# over its table's base) replaces the settings it excludes: --train_steps
# clears a config's train_epochs, a row's tasks clear the base's dataset.
_OVERRIDE_CLEARS = {
    "train_steps": {"train_epochs": None},
    "train_epochs": {"train_steps": None},
    "tasks": {"dataset": None, "resolutions": ()},
    "dataset": {"tasks": ()},
    "resolutions": {"tasks": (), "image_size": None, "image_sizes": None},
}


def merge_overrides(base: Mapping[str, Any], given: Mapping[str, Any]) -> dict:
  """`base` updated with `given`, clearing what each given setting excludes."""
  merged = dict(base)
  for name in given:
    for other, empty in _OVERRIDE_CLEARS.get(name, {}).items():
      if other not in given:
        merged[other] = empty
  merged.update(given)
  return merged


def _field(default, help_text: str, **metadata):
  return dataclasses.field(default=default,
                           metadata=dict(metadata, help=help_text))


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """Settings of one run; see the module docstring and each field's help."""
  workdir: str = _field("", "Output directory (checkpoints, TensorBoard logs, "
                        "patches, config.json, results.json).")
  # Model and patch.
  model: str = _field("mobilenet_v2", "Architecture: "
                      f"{', '.join(choices.ARCHITECTURES)}.")
  weights: Optional[str] = _field(
      "imagenet", f"Backbone weights: {choices.WEIGHTS_CHOICES}.")
  alpha: float = _field(1.0, "Width multiplier (MobileNets only).")
  patch: str = _field("scale_bias+logits", "Patch spec: kinds "
                      f"{', '.join(kinds.KINDS)} joined by '+' (TAPS as "
                      "published: taps+scale_bias+logits).")
  taps_lambda: float = _field(
      defaults.TAPS_LAMBDA, "taps: weight of the sparsity penalty lambda * mean |score| over "
      "the gated layers (TAPS's default 1; larger keeps fewer layers).")
  taps_warmup_epochs: Optional[float] = _field(
      None, "taps: epochs before the sparsity penalty starts (default: TAPS's "
      "2 epochs, or a tenth of the run if that is shorter).")
  taps_threshold: float = _field(
      defaults.TAPS_THRESHOLD, "taps: a layer's residual is used where its "
      f"score is >= this (scores start at {defaults.TAPS_SCORE_INIT:g}).")
  lora_rank: int = _field(
      defaults.LORA_RANK, "lora: the rank r of every residual (alpha/r) * A @ B "
      "(an integer >= 1); each Conv2D or Dense layer stores r * (k*k*C_in + "
      "C_out) parameters per task.")
  lora_alpha: Optional[float] = _field(
      None, "lora: residuals are scaled by lora_alpha / lora_rank (a number > "
      "0; default: the rank, a scale of 1).")
  bn_stats: str = _field("task", "BN statistics of patch BN layers: task "
                         "(re-estimated) or frozen (the base's).")
  bn_init: str = _field(
      "preserve", "Initial scales, biases and statistics of the BN layers a "
      "run trains in training mode: preserve (measure each layer's input "
      "statistics on the task's training split through the base, then set "
      "gamma, beta and the moving statistics so that the layer computes the "
      "base's function under the task's statistics) or copy (the base's "
      "values as they are; the paper-literal ablation).",
      choices=choices.BN_INIT)
  bn_momentum: Optional[float] = _field(
      None, "Momentum of training-mode BN layers (default: the model's, 0.999 "
      "for MobileNetV2); with PreciseBN on it only shapes mid-run checkpoints.")
  precise_bn_batches: int = _field(
      200, "PreciseBN: before every evaluation and before a patch is written, "
      "recompute the statistics of the BN layers the run trains over this "
      "many batches of the training split (whole split if smaller); 0: keep "
      "the moving averages.")
  add_missing_scales: bool = _field(
      False, "Give scale-less BN layers (InceptionV3) gammas.")
  # Tasks and data.
  dataset: Optional[str] = _field(
      None, "Dataset of a transfer, pretrain or multires run: a registry name, "
      "optionally with a label subset, e.g. cifar100 or mnist5k:5-9; "
      "folder:DIR (your images, one subfolder per class, or DIR/train/<class> "
      "and DIR/test/<class>); or tfds:NAME[/CONFIG][:labels] (any TFDS image "
      "classification dataset, prepared in --data_dir).")
  task: Optional[str] = _field(
      None, "Task name of a transfer run (default: from the dataset).")
  tasks: tuple = _field(
      (), "Datasets of a multi-task run (sequential: the tasks to add), e.g. "
      "cifar10,cifar100, mnist5k:5-6,mnist5k:7-9 or folder:DIR,tfds:beans "
      "(names as --dataset).", element=str)
  task_names: Optional[tuple] = _field(
      None, "One name per task of --tasks (default: from the datasets).",
      element=str)
  image_size: Optional[int] = _field(
      None, "Input size in pixels of every task (default: the dataset's and "
      "model's, e.g. 224 for MobileNetV2).")
  image_sizes: Optional[tuple] = _field(
      None, "One input size per task of --tasks.", element=int)
  resolutions: tuple = _field(
      (), "Multires: input sizes of --dataset, one patch per size and one "
      "shared head, e.g. 224,192,160,128,96.", element=int)
  shared: str = _field("frozen", "frozen: only the patches learn; trained: the "
                       "shared base also learns from every task.")
  task_sampling: str = _field(
      "all", "all (every step: one batch of every task, summed losses), "
      "round_robin or proportional (every step trains one task, chosen from "
      "the step and the seed).")
  sequential: bool = _field(False, "Add --tasks to the finished multi-task run "
                            "in --workdir, training only their patches.")
  pretrain: bool = _field(False, "Train every weight of a backbone and a new "
                          "head on --dataset and save the backbone "
                          "(backbone.weights.h5) for --weights=PATH.")
  export_image_size: Optional[int] = _field(
      None, "Input size of the exported multi-task serving model (default: "
      "the largest task size).")
  export_tflite: bool = _field(
      False, "Also write a LiteRT (TensorFlow Lite) file: transfer runs "
      "tflite/<task>.tflite, multitask and sequential runs tflite/tasks.tflite "
      "(one file serving every task, input task_id; multires and pretrain runs "
      "write none).")
  tflite_quantization: str = _field(
      "none", "Post-training quantization of --export_tflite: none, float16 "
      "(float16 weights), dynamic_int8 (int8 weights) or int8 (int8 weights "
      "and activations, ranges calibrated on training images; transfer runs "
      "only).",
      choices=choices.TFLITE_QUANTIZATIONS)
  data_dir: Optional[str] = _field(None, "TFDS data directory (or a directory "
                                   "with mnist_5k.csv.gz).")
  eval_fraction: Optional[float] = _field(
      None, "folder:DIR datasets without train/ and test/ folders: fraction "
      "of each class held out for evaluation (seeded, stratified; default "
      "0.2).")
  validation_fraction: Optional[float] = _field(
      None, "Hold out this fraction of every task's training split as a "
      "validation split, in (0, 1): training, PreciseBN and everything else "
      "that reads the training split use the rest, and the end-of-run "
      "evaluation also reports each task's validation accuracy (results.json "
      "tasks.<task>.validation_accuracy), on which make_tables picks each "
      "row's learning rate. Offline and folder datasets: per class, seeded, "
      "stratified; TFDS datasets: the split's last fraction in TFDS's record "
      "order (train[80%:]), not stratified. Default: none (train on the "
      "whole split).")
  image_key: Optional[str] = _field(
      None, "tfds: datasets: the image feature (default: the single Image "
      "feature, or the supervised_keys one).")
  label_key: Optional[str] = _field(
      None, "tfds: datasets: the ClassLabel feature (default: the single "
      "ClassLabel feature, or the supervised_keys one).")
  skip_bad_images: bool = _field(
      False, "folder:DIR datasets: skip image files that fail to decode (a "
      "corrupt body behind a valid header) instead of ending the run; each "
      "is named on stderr (once per pass over the data), and epoch sizes "
      "and dataset sizes still count it. Without it such a file ends the "
      "run with an error naming it; remove the file and rerun to resume from "
      "the last checkpoint. TFDS datasets decode their own prepared records: "
      "it does not apply to them.")
  # Schedule and optimizer.
  batch_size: int = _field(defaults.REFERENCE_BATCH, "Global batch size of each task (all replicas).")
  train_steps: Optional[int] = _field(
      None, "Optimizer steps (exclusive with --train_epochs).")
  train_epochs: Optional[float] = _field(
      None, f"Epochs (default {DEFAULT_TRAIN_EPOCHS:g} when --train_steps is "
      "unset); rounded up to whole steps.")
  learning_rate: Optional[float] = _field(
      None, "Learning rate for a batch of --lr_reference_batch; scaled "
      f"linearly (default: the paper's {defaults.PAPER_LEARNING_RATE:g}; "
      f"{defaults.LORA_FROZEN_BN_LEARNING_RATE:g} for a lora patch without a "
      "BN kind, whose factors ran away at the paper's rate).")
  lr_reference_batch: int = _field(defaults.REFERENCE_BATCH,
                                   "Batch size --learning_rate is given for.")
  lr_decay_rate: float = _field(defaults.LR_DECAY_RATE,
                                "Learning-rate decay factor (staircase).")
  lr_decay_epochs: float = _field(defaults.LR_DECAY_EPOCHS,
                                  "Epochs between learning-rate decays.")
  optimizer: str = _field("rmsprop", "rmsprop, sgd or adam.")
  momentum: float = _field(0.9, "Momentum (RMSProp, SGD).")
  rmsprop_rho: float = _field(0.9, "RMSProp rho.")
  epsilon: Optional[float] = _field(None, "Optimizer epsilon (default: 1.0 for "
                                    "RMSProp, 1e-7 otherwise).")
  label_smoothing: float = _field(defaults.LABEL_SMOOTHING,
                                  "Label smoothing in [0, 1).")
  weight_decay: float = _field(defaults.WEIGHT_DECAY,
                               "L2 coefficient on trainable kernels.")
  # Loop.
  eval_every: int = _field(1000, "Steps between evaluations (0: only at the end).")
  checkpoint_every: int = _field(500, "Steps between checkpoints (0: only at the end).")
  keep_checkpoints: int = _field(3, "Checkpoints kept.")
  summary_every: int = _field(50, "Steps between training summaries.")
  log_every_secs: float = _field(30.0, "Longest time between progress lines.")
  seed: int = _field(0, "Seed of initialisation, shuffling and augmentation.")
  deterministic: bool = _field(
      False, "TensorFlow op determinism for the whole process: the same command "
      "gives bit-identical weights on the same build and machine (slower).")
  # Performance and distribution.
  strategy: str = _field("default", "default, one_device, mirrored, "
                         "multi_worker or tpu.")
  tpu_address: Optional[str] = _field(None, "TPU name or address (--strategy=tpu).")
  jit_compile: Any = _field(
      "auto", "Compile the train step with XLA: auto (on with a GPU/TPU, off "
      "on CPU, where XLA is slower), true or false.",
      choices=choices.JIT_COMPILE)
  mixed_precision: str = _field(
      "none", "Layer compute dtype policy: none, mixed_float16 (with dynamic "
      "loss scaling) or mixed_bfloat16.")
  cache_features: bool = _field(
      False, "--patch=logits, one task: compute the frozen backbone's features "
      "once per training image (no augmentation) and train the head on them.")
  prefetch_to_device: bool = _field(
      True, "Under a strategy, prefetch each replica's batches to its device.")
  input_pipeline: str = _field(
      "per_worker", "per_worker: one training tf.data pipeline per worker feeds "
      "its replicas (TensorFlow's default); per_replica: one pipeline per "
      "replica, each reading its own shard (a one-host mirrored run then reads "
      "its data as a multi-worker run with one replica per worker does).")

  @classmethod
  def field_names(cls) -> tuple:
    return tuple(f.name for f in dataclasses.fields(cls))

  @property
  def experiment(self) -> str:
    """The kind of run, one of `choices.EXPERIMENTS`, read from the fields."""
    if self.pretrain:
      return "pretrain"
    if self.sequential:
      return "sequential"
    if self.resolutions:
      return "multires"
    return "multitask" if self.tasks else "transfer"

  def replace(self, **overrides) -> "RunConfig":
    """Returns a copy with `overrides` applied.

    Raises:
      ValueError: an override names no field.
    """
    unknown = sorted(set(overrides) - set(self.field_names()))
    if unknown:
      raise ValueError(f"Unknown config field(s) {unknown}; valid fields: "
                       f"{', '.join(self.field_names())}.")
    for name in ("tasks", "task_names", "image_sizes", "resolutions"):
      if isinstance(overrides.get(name), list):  # From JSON or a config file.
        overrides[name] = tuple(overrides[name])
    return dataclasses.replace(self, **overrides)

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> "RunConfig":
    """Builds a config from defaults overridden by `values` (unknown keys raise)."""
    return cls().replace(**dict(values))

  def to_dict(self) -> dict:
    """The fields as JSON gives them back (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(self).items()}
