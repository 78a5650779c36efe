r"""Transfer learning with a model patch: one model, one dataset, one patch.

  python -m experiments.transfer --model=mobilenet_v2 --weights=imagenet \
      --dataset=cifar100 --patch=scale_bias+logits --workdir=runs/cifar100_sb

Defaults are the paper's recipe (see `k4p1.train.TransferConfig`).
`--config=<name>` starts from `experiments/configs/<name>.py`; flags given on
the command line override it. Rerunning a command with the same `--workdir`
resumes from its last checkpoint. The work is done by `k4p1.train.run_transfer`.
"""

import shlex
import sys

from absl import app
from absl import flags
from absl import logging

from experiments import configs
from k4p1 import data
from k4p1 import train
from k4p1.train import performance

_DEFAULTS = train.TransferConfig()

flags.DEFINE_string("workdir", None, "Output directory (checkpoints, TensorBoard "
                    "logs, patch, config.json, results.json).")
flags.DEFINE_string("config", None, "Config from experiments/configs/ (name or "
                    ".py path) to start from; flags override it.")
# Model and patch.
flags.DEFINE_string("model", _DEFAULTS.model, "Architecture: one of "
                    "mobilenet_v2, inception_v3, resnet50, efficientnet_b0, "
                    "mobilenet_v3_large.")
flags.DEFINE_string("weights", _DEFAULTS.weights, "Backbone weights: none, "
                    "imagenet, a .keras/.h5/.weights.h5 path, or slim:<ckpt>, "
                    "ssd_tf1:<ckpt>, ssd_tf2:<ckpt>.")
flags.DEFINE_float("alpha", _DEFAULTS.alpha, "Width multiplier (MobileNets).")
flags.DEFINE_integer("image_size", None, "Input size in pixels (default: the "
                     "dataset's and model's, e.g. 224 for MobileNetV2).")
flags.DEFINE_string("patch", _DEFAULTS.patch, "Patch spec: kinds logits, "
                    "scale_bias, scale, bias, depthwise, full joined with '+'.")
flags.DEFINE_string("bn_stats", _DEFAULTS.bn_stats, "BN statistics of patch "
                    "BN layers: task (re-estimated) or frozen (the base's).")
flags.DEFINE_float("bn_momentum", None, "Momentum of training-mode BN layers "
                   "(default: the model's, 0.999 for MobileNetV2).")
flags.DEFINE_integer("precise_bn_batches", _DEFAULTS.precise_bn_batches,
                     "PreciseBN: before every evaluation and before writing "
                     "the patch, recompute the statistics of the BN layers "
                     "the run trains over this many batches of the training "
                     "split (whole split if smaller); 0: keep the moving "
                     "averages.")
flags.DEFINE_bool("add_missing_scales", _DEFAULTS.add_missing_scales,
                  "Give scale-less BN layers (InceptionV3) gammas.")
# Data.
flags.DEFINE_string("dataset", _DEFAULTS.dataset, "Registry dataset, optionally "
                    "with a label subset, e.g. cifar100 or mnist5k:5-9.")
flags.DEFINE_string("task", None, "Task name (default: from the dataset).")
flags.DEFINE_string("data_dir", None, "TFDS data directory.")
# Schedule and optimizer.
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Global batch size.")
flags.DEFINE_integer("train_steps", None, "Training steps (exclusive with "
                     "--train_epochs).")
flags.DEFINE_float("train_epochs", None, "Training epochs (default "
                   f"{train.DEFAULT_TRAIN_EPOCHS:g} when --train_steps is unset).")
flags.DEFINE_float("learning_rate", _DEFAULTS.learning_rate, "Learning rate for "
                   "a batch of --lr_reference_batch; scaled linearly.")
flags.DEFINE_integer("lr_reference_batch", _DEFAULTS.lr_reference_batch,
                     "Batch size --learning_rate is given for.")
flags.DEFINE_float("lr_decay_rate", _DEFAULTS.lr_decay_rate,
                   "Learning-rate decay factor (staircase).")
flags.DEFINE_float("lr_decay_epochs", _DEFAULTS.lr_decay_epochs,
                   "Epochs between learning-rate decays.")
flags.DEFINE_string("optimizer", _DEFAULTS.optimizer, "rmsprop, sgd or adam.")
flags.DEFINE_float("momentum", _DEFAULTS.momentum, "Momentum (RMSProp, SGD).")
flags.DEFINE_float("rmsprop_rho", _DEFAULTS.rmsprop_rho, "RMSProp rho.")
flags.DEFINE_float("epsilon", None, "Optimizer epsilon (default: 1.0 for "
                   "RMSProp, 1e-7 for Adam).")
flags.DEFINE_float("label_smoothing", _DEFAULTS.label_smoothing,
                   "Label smoothing in [0, 1).")
flags.DEFINE_float("weight_decay", _DEFAULTS.weight_decay,
                   "L2 coefficient on trainable kernels.")
# Loop.
flags.DEFINE_integer("eval_every", _DEFAULTS.eval_every, "Steps between "
                     "evaluations (0: only at the end).")
flags.DEFINE_integer("checkpoint_every", _DEFAULTS.checkpoint_every, "Steps "
                     "between checkpoints (0: only at the end).")
flags.DEFINE_integer("keep_checkpoints", _DEFAULTS.keep_checkpoints,
                     "Checkpoints kept.")
flags.DEFINE_integer("summary_every", _DEFAULTS.summary_every,
                     "Steps between training summaries.")
flags.DEFINE_float("log_every_secs", _DEFAULTS.log_every_secs,
                   "Longest time between progress lines in the log.")
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Random seed.")
flags.DEFINE_bool("deterministic", _DEFAULTS.deterministic, "TensorFlow op "
                  "determinism: the same command gives bit-identical weights "
                  "on the same build and machine (slower).")
flags.DEFINE_string("strategy", _DEFAULTS.strategy, "default, one_device, "
                    "mirrored, multi_worker or tpu.")
flags.DEFINE_string("tpu_address", None, "TPU name or address (--strategy=tpu).")
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                  "Compile the train step with XLA; auto: on with a GPU/TPU, "
                  "off on CPU (where XLA is slower).")
flags.DEFINE_enum("mixed_precision", _DEFAULTS.mixed_precision,
                  list(performance.MIXED_PRECISION), "Layer compute dtype policy; "
                  "mixed_float16 adds dynamic loss scaling.")
flags.DEFINE_bool("cache_features", _DEFAULTS.cache_features, "--patch=logits "
                  "only: compute the frozen backbone's features once per "
                  "training image (no augmentation) and train the head on them.")
flags.DEFINE_bool("prefetch_to_device", _DEFAULTS.prefetch_to_device,
                  "Under a strategy, prefetch each replica's batches to its "
                  "device (overlaps host-to-device copies with the step).")
flags.mark_flag_as_required("workdir")

FLAGS = flags.FLAGS
# Flags that map one to one onto TransferConfig fields.
CONFIG_FLAGS = tuple(name for name in train.TransferConfig.field_names())
_EXCLUSIVE = (("train_steps", "train_epochs"),)


def was_given(flag_values: flags.FlagValues, name: str) -> bool:
  """Whether flag `name` was set on the command line (or by a test)."""
  flag = flag_values[name]
  return flag.present or not flag.using_default_value


def given_flags(flag_values: flags.FlagValues, names) -> list:
  """The flags among `names` that are defined and were given, in order."""
  return [name for name in names
          if name in flag_values and was_given(flag_values, name)]


def build_config(flag_values: flags.FlagValues = FLAGS) -> train.TransferConfig:
  """TransferConfig defaults <- `--config` overrides <- flags that were given.

  Raises:
    ValueError: an unknown config, field or flag value (naming the choices).
  """
  config = train.TransferConfig()
  if flag_values.config:
    config = config.replace(**configs.load_overrides(flag_values.config))
  given = {name: flag_values[name].value
           for name in given_flags(flag_values, CONFIG_FLAGS)}
  config = apply_given(config, given)
  config.validate()
  return config


def apply_given(config, given: dict):
  """Returns `config` with the values of the flags that were given.

  A training length given on the command line replaces the config's other one
  (`--train_steps` clears a config's `train_epochs`, and vice versa), and
  `--jit_compile=true|false` becomes a bool ("auto" stays a string).
  """
  given = dict(given)
  for first, second in _EXCLUSIVE:
    if first in given and second not in given:
      given[second] = None
    elif second in given and first not in given:
      given[first] = None
  if isinstance(given.get("jit_compile"), str) and given["jit_compile"] != "auto":
    given["jit_compile"] = given["jit_compile"] == "true"
  return config.replace(**given)


def command_line(module: str, flag_values: flags.FlagValues,
                 config_flags=CONFIG_FLAGS) -> str:
  """The command that reproduces this run: the module and the flags given."""
  given = [flag_values[name].serialize()
           for name in given_flags(flag_values, ("config",) + config_flags)]
  return shlex.join(["python", "-m", module] + given)


def exit_on_bad_flags(error: Exception) -> None:
  """Exits with absl's one-line flag error (the message names the choices)."""
  print(f"FATAL Flags parsing error: {error}\nPass --helpshort or --helpfull "
        "to see help on flags.", file=sys.stderr)
  sys.exit(1)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    config = build_config(FLAGS)
  except ValueError as e:
    exit_on_bad_flags(e)
  command = command_line("experiments.transfer", FLAGS)
  try:
    results = train.run_transfer(config, command=command)
  except (data.DatasetNotPreparedError, train.WorkdirMismatchError) as e:
    # Problems the user fixes outside the code: the message says how.
    print(f"FATAL {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
  for task, metrics in results["tasks"].items():
    logging.info("%s: accuracy %.4f after %d steps; patch %s (%d bytes), %s "
                 "trainable parameters.", task, metrics["accuracy"],
                 results["steps"], results.get("patch_file"),
                 results.get("patch_file_bytes", 0),
                 results["params"]["patch_trainable"])


if __name__ == "__main__":
  app.run(main)
