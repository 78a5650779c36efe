"""Checks of a `RunConfig`'s fields; `plan.resolve` runs them once per run.

Each raises `ValueError` naming the field, its value and the valid choices.
"""

from k4p1 import data
from k4p1 import models
from k4p1 import patches
from k4p1 import paths
from k4p1.core import choices
from k4p1.core import defaults
from k4p1.core import names
from k4p1.core import run_kinds
from k4p1.train import config as config_lib
from k4p1.train import performance

# The task-name rules live in the core (TensorFlow-free: the experiment
# configs name their rows with them); kept here for code that imports them.
check_task_names = names.check_task_names
default_task_name = names.default_task_name
model_task_name = names.model_task_name
_POSITIVE = ("lr_decay_epochs", "lr_decay_rate", "log_every_secs")
# URL schemes TFDS opens as its data directory itself (through etils.epath).
TFDS_DATA_DIR_SCHEMES = ("gs", "s3")


def check_choice(field: str, value, choices) -> None:
  if value not in choices:
    raise ValueError(f"Unknown {field} {value!r}; valid choices: "
                     f"{', '.join(str(c) for c in choices)}.")


def check_int(field: str, value, minimum: int) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ValueError(f"{field} must be an integer >= {minimum}, got {value!r}.")


def _check_fraction(field: str, value) -> None:
  if not 0.0 <= value < 1.0:
    raise ValueError(f"{field} must be in [0, 1), got {value!r}.")


def check_fields(config: config_lib.RunConfig) -> patches.PatchSpec:
  """Checks every field that does not depend on the kind of run.

  Returns:
    The parsed patch spec (parsed here once; the plan keeps it).
  """
  if not config.workdir:
    raise ValueError("workdir is required (the run's output directory).")
  arch = models.get_architecture(config.model)  # Raises with the choices.
  spec = patches.PatchSpec.parse(config.patch)
  for field, valid in (("strategy", choices.STRATEGIES),
                       ("optimizer", choices.OPTIMIZERS),
                       ("bn_stats", choices.BN_STATS),
                       ("bn_init", choices.BN_INIT),
                       ("shared", choices.SHARED),
                       ("task_sampling", choices.TASK_SAMPLING),
                       ("mixed_precision", choices.MIXED_PRECISION),
                       ("input_pipeline", choices.INPUT_PIPELINES),
                       ("tflite_quantization", choices.TFLITE_QUANTIZATIONS)):
    check_choice(field, getattr(config, field), valid)
  models.check_weights(config.weights)
  check_data_dir(config.data_dir)
  if config.alpha != 1.0 and not arch.supports_alpha:
    raise ValueError(f"alpha={config.alpha} is not supported by {config.model}; "
                     "only MobileNets take a width multiplier.")
  for field in ("image_size", "export_image_size"):
    if getattr(config, field) is not None:
      check_int(field, getattr(config, field), arch.min_image_size)
  for size in tuple(config.image_sizes or ()) + tuple(config.resolutions):
    check_int("image size", size, arch.min_image_size)
  check_int("batch_size", config.batch_size, 1)
  if config.train_steps is not None and config.train_epochs is not None:
    raise ValueError(f"Set train_steps ({config.train_steps}) or train_epochs "
                     f"({config.train_epochs}), not both.")
  if config.train_steps is not None:
    check_int("train_steps", config.train_steps, 1)
  if config.train_epochs is not None and not config.train_epochs > 0:
    raise ValueError(f"train_epochs must be > 0, got {config.train_epochs!r}.")
  for name in _POSITIVE:
    if not getattr(config, name) > 0:
      raise ValueError(f"{name} must be > 0, got {getattr(config, name)!r}.")
  for name in ("learning_rate", "epsilon"):  # None: the kind's default.
    if getattr(config, name) is not None and not getattr(config, name) > 0:
      raise ValueError(f"{name} must be > 0, got {getattr(config, name)!r}.")
  for name in ("label_smoothing", "momentum"):
    _check_fraction(name, getattr(config, name))
  if config.bn_momentum is not None:
    _check_fraction("bn_momentum", config.bn_momentum)
  if config.eval_fraction is not None and (
      isinstance(config.eval_fraction, bool) or
      not 0.0 < config.eval_fraction < 1.0):
    raise ValueError(f"eval_fraction must be in (0, 1), got "
                     f"{config.eval_fraction!r}.")
  _check_validation_fraction(config.validation_fraction)
  if config.weight_decay < 0:
    raise ValueError(f"weight_decay must be >= 0, got {config.weight_decay!r}.")
  for name, minimum in (("lr_reference_batch", 1), ("precise_bn_batches", 0),
                        ("eval_every", 0), ("checkpoint_every", 0),
                        ("keep_checkpoints", 1), ("summary_every", 1)):
    check_int(name, getattr(config, name), minimum)
  _check_taps(config, spec)
  patches.lora.check_settings(config.lora_rank, config.lora_alpha)
  if spec.has_lora and config.shared == "trained":
    raise ValueError("patch 'lora' adds low-rank residuals to a frozen shared "
                     "kernel; shared='trained' would train that kernel too: "
                     "use shared='frozen' with lora.")
  performance.resolve_jit_compile(config.jit_compile)  # Raises with choices.
  if config.tpu_address and config.strategy != "tpu":
    raise ValueError(f"tpu_address={config.tpu_address!r} needs strategy "
                     f"'tpu', not {config.strategy!r}.")
  return spec


def check_data_dir(data_dir, infos=()) -> None:
  """A URL data_dir: TFDS datasets in a gs:// or s3:// directory only.

  Args:
    data_dir: the config's data_dir.
    infos: the run's resolved datasets (`DatasetInfo`s); none: check the
      scheme only (before TFDS sees the directory).

  Raises:
    ValueError: a scheme TFDS cannot open, or an offline dataset (it reads
      `data_dir` from a local disk).
  """
  if data_dir is None or not paths.is_url(data_dir):
    return
  if paths.scheme(data_dir) not in TFDS_DATA_DIR_SCHEMES:
    raise ValueError(
        f"data_dir={data_dir!r}: TFDS opens its data directory through "
        "etils.epath, which reads local paths and "
        f"{', '.join(s + '://' for s in TFDS_DATA_DIR_SCHEMES)} URLs, not "
        f"{paths.scheme(data_dir)}://. Prepare the datasets on a local disk "
        "(on every host) or in a gs:// bucket.")
  offline = [info.name for info in infos
             if info.source == data.registry.SOURCE_OFFLINE]
  if offline:
    raise ValueError(
        f"data_dir={data_dir!r} is a URL, but {offline} read their files "
        "(mnist_5k.csv.gz, the MNIST-M photos) from a local directory: drop "
        "data_dir (the packaged copies are used) or pass a local one.")


def _check_validation_fraction(value) -> None:
  if value is not None and (isinstance(value, bool) or
                            not isinstance(value, (int, float)) or
                            not 0.0 < value < 1.0):
    raise ValueError(f"validation_fraction must be in (0, 1) (the fraction of "
                     "each task's training split held out for validation), "
                     f"got {value!r}.")


def _check_taps(config, spec) -> None:
  if config.taps_lambda < 0:
    raise ValueError(f"taps_lambda must be >= 0, got {config.taps_lambda!r}.")
  if config.taps_warmup_epochs is not None and config.taps_warmup_epochs < 0:
    raise ValueError(f"taps_warmup_epochs must be >= 0, got "
                     f"{config.taps_warmup_epochs!r}.")
  if not 0.0 <= config.taps_threshold < defaults.TAPS_SCORE_INIT:
    raise ValueError(f"taps_threshold must be in [0, {defaults.TAPS_SCORE_INIT})"
                     f" (below the scores' initial value), got "
                     f"{config.taps_threshold!r}.")
  if spec.is_taps and config.shared == "trained":
    raise ValueError("patch 'taps' adds residuals to a frozen shared kernel; "
                     "shared='trained' would train that kernel too: use "
                     "shared='frozen' with taps.")


def check_experiment(config: config_lib.RunConfig,
                     spec: patches.PatchSpec) -> None:
  """Checks the task settings against the kind of run they make."""
  tasks, resolutions = tuple(config.tasks), tuple(config.resolutions)
  if config.dataset and tasks:
    raise ValueError(f"Set dataset ({config.dataset!r}: one task, or the "
                     f"multires dataset) or tasks ({list(tasks)}: several), "
                     "not both.")
  if not config.dataset and not tasks:
    raise ValueError("No task: set dataset=<name> (one task, e.g. cifar100 or "
                     "mnist5k:5-9) or tasks=(<name>, ...) (multi-task).")
  kind = config.experiment
  policy = run_kinds.policy(kind)
  if config.pretrain and (config.sequential or resolutions or tasks):
    raise ValueError("pretrain trains one backbone on dataset=<name>; it "
                     "excludes tasks, resolutions and sequential.")
  if config.sequential and resolutions:
    raise ValueError("resolutions (multires) and sequential exclude each other.")
  if config.sequential and not tasks:
    raise ValueError("A sequential run adds tasks=(<name>, ...) to the run in "
                     "workdir; tasks is empty.")
  if config.sequential and config.shared != "frozen":
    raise ValueError("A sequential run trains only the new tasks' patches: "
                     f"shared must be 'frozen', not {config.shared!r}.")
  if resolutions:
    _check_multires(config, spec)
  if config.task is not None and not policy.single_task:
    raise ValueError(f"task={config.task!r} names the task of a one-dataset "
                     "run; name several tasks with task_names.")
  if config.task is not None:
    default_task_name(config.task)  # Same character rules.
  for field in ("task_names", "image_sizes"):
    value = getattr(config, field)
    if value is not None and len(value) != len(tasks):
      raise ValueError(f"{field} has {len(value)} entries for the "
                       f"{len(tasks)} tasks {list(tasks)}: {list(value)}.")
  if not policy.transfer_options:
    for field, off in (("cache_features", False), ("mixed_precision", "none")):
      if getattr(config, field) != off:
        raise ValueError(f"{field}={getattr(config, field)!r} is supported by "
                         f"transfer runs only, not {kind}; use {off!r}.")
  _check_tflite(config, policy)
  if config.cache_features and str(spec) != "logits":
    raise ValueError(f"cache_features needs patch 'logits' (only the head "
                     f"trains), not {config.patch!r}.")


def _check_tflite(config, policy) -> None:
  """export_tflite: kinds with a LiteRT export; no int8 K-task file."""
  if not config.export_tflite:
    return
  if policy.tflite is None:
    exporting = [k for k, p in run_kinds.POLICIES.items() if p.tflite]
    raise ValueError(f"export_tflite is not supported by {policy.kind} runs "
                     f"(they write no task model to serve); runs that export: "
                     f"{', '.join(exporting)}.")
  if config.tflite_quantization == "int8" and policy.tflite == "tasks":
    raise ValueError("tflite_quantization='int8' is for transfer runs: the "
                     "K-task file's int8 accuracy is near chance; use "
                     "dynamic_int8 (see k4p1.patches.litert).")


def _check_multires(config, spec) -> None:
  resolutions = list(config.resolutions)
  if not config.dataset:
    raise ValueError("Multires needs dataset=<name> (the dataset trained at "
                     f"resolutions {resolutions}).")
  if len(set(resolutions)) != len(resolutions):
    raise ValueError(f"resolutions {resolutions} repeat a size.")
  if config.image_sizes or config.image_size is not None:
    raise ValueError("Multires takes its sizes from resolutions; do not also "
                     "pass image_size or image_sizes.")
  if spec.is_full or not spec.kinds - {"logits"}:
    raise ValueError(f"Multires needs a patch with per-resolution kinds (e.g. "
                     f"scale_bias), not {str(spec)!r}: the head is shared by "
                     "every resolution.")
