r"""The entry point of every kind of run: flags -> `RunConfig` -> `k4p1.train.run`.

  # Transfer: one model, one dataset, one patch.
  python -m experiments.run --model=mobilenet_v2 --weights=imagenet \
      --dataset=cifar100 --patch=scale_bias+logits --workdir=runs/cifar100_sb
  # Multi-task: K tasks on one shared base, one patch and one head per task.
  python -m experiments.run --model=mobilenet_v2 --weights=imagenet \
      --tasks=cifar10,cifar100,oxford_flowers102 --patch=scale_bias+logits \
      --workdir=runs/mt
  # Sequential: add a task to that run; the earlier tasks' outputs stay
  # bit-identical.
  python -m experiments.run --sequential --tasks=cars196 --workdir=runs/mt
  # Multi-resolution: one dataset at several sizes, one S/B patch per size,
  # one shared head.
  python -m experiments.run --dataset=cifar100 \
      --resolutions=224,192,160,128,96 --patch=scale_bias --workdir=runs/mr
  # Pretraining: every weight of a backbone and a head, saved for --weights.
  python -m experiments.run --pretrain --patch=full --weights=none \
      --dataset=mnist5k:0-4 --workdir=runs/backbone

Every flag is a field of `k4p1.core.RunConfig` (`--helpfull` lists them with
their help); defaults are the paper's recipe. The kind of run is read from
the fields (`RunConfig.experiment`), never from the command's name.
`--config=<name>` starts from `experiments/configs/<name>.py` (a table row:
`<name>@<row>`); flags given on the command line override it. `--batch_size`
is each task's batch; `--shared=trained` also trains the shared base on every
task; `--task_sampling=round_robin|proportional` trains one task per step
instead of all. Rerunning a command with the same `--workdir` resumes from its
last checkpoint. `experiments.transfer` and `experiments.multitask` are this
entry point under its former names.
"""

from absl import app
from absl import flags

from experiments import config_flags
from experiments import logs

MODULE = "experiments.run"


def format_run_table(results: dict) -> str:
  """The run's Markdown table, one row per task, as the demo prints its own."""
  lines = [f"{results['experiment']}: {results['model']}, patch {results['patch']}, "
           f"{results['steps']} steps.", "",
           "| task | dataset | accuracy | examples | trained params | "
           "stored params | trained in this run |", "|---|---|---|---|---|---|---|"]
  for name, task in results["tasks"].items():
    params = task.get("params", results["params"])
    lines.append(
        f"| {name} | {task['dataset']} | {task['accuracy']:.3f} | "
        f"{task['examples']:,} | {params['patch_trainable']:,} | "
        f"{params['patch_stored']:,} | "
        f"{'yes' if task.get('trained_in_this_run', True) else 'no'} |")
  if "system_params" in results:
    lines += ["", f"{len(results['tasks'])} tasks in "
              f"{results['system_params']:,} parameters; "
              f"{results['separate_models_params']:,} as separate models."]
  if "patch_file" in results:
    lines += ["", f"Patch file {results['patch_file']}: "
              f"{results['patch_file_bytes']:,} bytes."]
  alarm = results.get("training_alarm")
  if alarm:
    lines += ["", f"WARNING: training failed ({alarm['reason']}: cross-entropy "
              f"{alarm['last_loss']:.3g}, training accuracy {alarm['last_accuracy']:.3f} "
              "at the end): these accuracies are not a trained patch's; lower "
              "--learning_rate."]
  return "\n".join(lines)


def run_from_flags(argv) -> dict:
  """The parsed flags -> config -> plan -> `train.run`; returns results.json's content.

  absl's main once `config_flags.define_flags` defined the flags and they are
  parsed. A bad value, workdir or dataset exits with one `FATAL` line.
  """
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logs.import_tensorflow_quietly()
  from k4p1 import data  # pylint: disable=g-import-not-at-top
  from k4p1 import train  # pylint: disable=g-import-not-at-top
  logs.configure()
  try:
    config = config_flags.build_config(flags.FLAGS)
    # Before any other TensorFlow work: a multi-worker strategy configures
    # TensorFlow's collective ops, which is only possible at start-up.
    strategy = train.build_strategy(config.strategy, config.tpu_address)
    plan = train.resolve(config)
  except (train.WorkdirMismatchError, train.ClusterConfigError) as e:
    logs.fatal(f"{type(e).__name__}: {e}")
  except ValueError as e:
    logs.fatal(f"Flags parsing error: {e}\nPass --helpshort or --helpfull to "
               "see help on flags.")
  try:
    results = train.run(plan, command=config_flags.command_line(MODULE),
                        strategy=strategy)
  except (data.DatasetNotPreparedError, train.WorkdirMismatchError) as e:
    # Problems the user fixes outside the code: the message says how.
    logs.fatal(f"{type(e).__name__}: {e}")
  except data.BadImageError as e:
    # Mid-run: the checkpoints written before it are intact.
    logs.fatal(f"{type(e).__name__}: {e} Rerun with the same --workdir to "
               "resume from the last checkpoint.")
  print(format_run_table(results))
  return results


def app_main(argv) -> None:
  """absl's main: `run_from_flags`, returning nothing (absl exits with it)."""
  run_from_flags(argv)


def main(argv=None) -> None:
  """Defines the flags, parses `argv` (default: the command line) and runs."""
  config_flags.define_flags()
  flags.mark_flag_as_required("workdir")
  app.run(app_main, argv=argv)


if __name__ == "__main__":
  main()
