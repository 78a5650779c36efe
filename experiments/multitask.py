r"""Multi-task, sequential and multi-resolution learning with per-task patches.

  # K tasks on one shared base, one patch and one head per task:
  python -m experiments.multitask --model=mobilenet_v2 --weights=imagenet \
      --tasks=cifar10,cifar100,oxford_flowers102 --patch=scale_bias+logits \
      --workdir=runs/mt
  # Add a task to that run; the earlier tasks' outputs stay bit-identical:
  python -m experiments.multitask --sequential --tasks=cars196 --workdir=runs/mt
  # One dataset at several sizes, one S/B patch per size, one shared head:
  python -m experiments.multitask --dataset=cifar100 \
      --resolutions=224,192,160,128,96 --patch=scale_bias --workdir=runs/mr

Every training flag of `experiments.transfer` applies (its flags are reused:
both scripts can live in one process); `--batch_size` is each task's batch.
`--shared=trained` also trains the shared base on every task;
`--task_sampling=round_robin|proportional` trains one task per step instead
of all. The work is done by `k4p1.train.run_multitask`.
"""

import sys

from absl import app
from absl import flags
from absl import logging

from experiments import configs
from experiments import transfer
from k4p1 import data
from k4p1 import train

flags.DEFINE_list("tasks", None, "Datasets of the tasks (with --sequential: the "
                  "tasks to add), e.g. cifar10,cifar100 or mnist5k:5-6,mnist5k:7-9.")
flags.DEFINE_list("task_names", None, "One name per task (default: from the "
                  "datasets, e.g. mnist5k_5-6).")
flags.DEFINE_list("image_sizes", None, "One input size per task (default: "
                  "--image_size for all, or each dataset's default).")
flags.DEFINE_list("resolutions", None, "Multi-resolution: input sizes of "
                  "--dataset, one patch per size, e.g. 224,192,160,128,96.")
flags.DEFINE_enum("shared", "frozen", train.SHARED, "frozen: only the patches "
                  "learn; trained: the shared base also learns from every task.")
flags.DEFINE_string("task_sampling", "all", "all (every step: one batch of every "
                    "task, summed losses), round_robin or proportional (every "
                    "step trains one task, chosen from the step and the seed).")
flags.DEFINE_bool("sequential", False, "Add --tasks to the finished run in "
                  "--workdir, training only their patches.")
flags.DEFINE_integer("export_image_size", None, "Input size of the exported "
                     "serving model (default: the largest task size).")

FLAGS = flags.FLAGS
CONFIG_FLAGS = train.MultitaskConfig.field_names()
_INT_LISTS = ("image_sizes", "resolutions")
_TUPLES = ("tasks", "task_names")


def _flag_value(flag_values: flags.FlagValues, name: str):
  value = flag_values[name].value
  if value is None:
    return None
  if name in _INT_LISTS:
    try:
      return tuple(int(v) for v in value)
    except ValueError:
      raise ValueError(f"--{name} must be integers separated by commas, got "
                       f"{','.join(value)!r}.") from None
  if name in _TUPLES:
    return tuple(value)
  return value


def build_config(flag_values: flags.FlagValues = FLAGS) -> train.MultitaskConfig:
  """MultitaskConfig defaults <- `--config` overrides <- flags that were given.

  Raises:
    ValueError: an unknown config, field or flag value (naming the choices).
  """
  config = train.MultitaskConfig()
  if flag_values.config:
    config = config.replace(**configs.load_overrides(flag_values.config))
  given = {name: _flag_value(flag_values, name)
           for name in transfer.given_flags(flag_values, CONFIG_FLAGS)}
  # Multires flags replace the config's task list and sizes, and vice versa.
  if "resolutions" in given:
    for name, empty in (("tasks", ()), ("image_size", None), ("image_sizes", None)):
      given.setdefault(name, empty)
  elif "tasks" in given:
    given.setdefault("resolutions", ())
  config = transfer.apply_given(config, given)
  config.validate()
  return config


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    config = build_config(FLAGS)
  except ValueError as e:
    transfer.exit_on_bad_flags(e)
  command = transfer.command_line("experiments.multitask", FLAGS, CONFIG_FLAGS)
  try:
    results = train.run_multitask(config, command=command)
  except (data.DatasetNotPreparedError, train.WorkdirMismatchError) as e:
    # Problems the user fixes outside the code: the message says how.
    print(f"FATAL {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
  for task, metrics in results["tasks"].items():
    logging.info("%s: accuracy %.4f.", task, metrics["accuracy"])
  logging.info("%s: %d tasks in %s parameters; %s as separate models.",
               results["experiment"], len(results["tasks"]),
               f"{results['system_params']:,}",
               f"{results['separate_models_params']:,}")


if __name__ == "__main__":
  app.run(main)
