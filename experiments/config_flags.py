"""Command-line flags generated from `k4p1.core.RunConfig`, and the shared main.

Every field of `RunConfig` is a flag of the same name, type, default and help
(the field's `help` metadata): a setting is declared once, in the config.
`build_config` starts from the defaults, applies `--config=<name>`
(`experiments/configs/<name>.py`, or a table row `<name>@<row>`), then the
flags given on the command line. `main` turns flags into a plan (every check,
once), runs it and exits with one clear line on a bad value or workdir.
Defining the flags and building the config import no TensorFlow: `main`
imports it (quietly, `logs.import_tensorflow_quietly`), then the trainer.
"""

import dataclasses
import shlex
import sys
import typing

from absl import app
from absl import flags

from experiments import configs
from experiments import logs
from k4p1 import core

FLAGS = flags.FLAGS
CONFIG_FLAGS = core.RunConfig.field_names()


def _base_type(annotation):
  args = [a for a in typing.get_args(annotation) if a is not type(None)]
  return args[0] if typing.get_origin(annotation) is typing.Union else annotation


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """Defines `--config` and one flag per `RunConfig` field."""
  flags.DEFINE_string("config", None, "Config from experiments/configs/ (name, "
                      "name@row or .py path) to start from; flags override it.",
                      flag_values=flag_values)
  for field in dataclasses.fields(core.RunConfig):
    kind, help_text = _base_type(field.type), field.metadata["help"]
    default = None if field.default == "" else field.default
    args = dict(flag_values=flag_values)
    if "choices" in field.metadata:
      flags.DEFINE_enum(field.name, default, field.metadata["choices"],
                        help_text, **args)
    elif kind is bool:
      flags.DEFINE_bool(field.name, default, help_text, **args)
    elif kind is int:
      flags.DEFINE_integer(field.name, default, help_text, **args)
    elif kind is float:
      flags.DEFINE_float(field.name, default, help_text, **args)
    elif kind is tuple:
      flags.DEFINE_list(field.name, list(default) if default else None,
                        help_text, **args)
    else:
      flags.DEFINE_string(field.name, default, help_text, **args)


def _given(flag_values: flags.FlagValues, names) -> list:
  """The flags among `names` that were set on the command line (or by a test)."""
  return [n for n in names if n in flag_values and
          (flag_values[n].present or not flag_values[n].using_default_value)]


def _value(flag_values: flags.FlagValues, name: str):
  """A flag's value in its config field's type (lists become tuples)."""
  value = flag_values[name].value
  field = {f.name: f for f in dataclasses.fields(core.RunConfig)}[name]
  if value is None or _base_type(field.type) is not tuple:
    if name == "jit_compile" and value in ("true", "false"):
      return value == "true"
    return value
  element = field.metadata.get("element", str)
  try:
    return tuple(element(v) for v in value)
  except ValueError:
    raise ValueError(f"--{name} must be {element.__name__}s separated by "
                     f"commas, got {','.join(value)!r}.") from None


def build_config(flag_values: flags.FlagValues = FLAGS) -> core.RunConfig:
  """Defaults <- `--config` overrides <- the flags that were given.

  A given flag replaces the settings it excludes (`core.merge_overrides`):
  `--train_steps` clears a config's `train_epochs`, `--tasks` its `dataset`.

  Raises:
    ValueError: an unknown config or field (naming the choices).
  """
  overrides = {}
  if flag_values["config"].value:
    overrides = configs.load_overrides(flag_values["config"].value)
  given = {n: _value(flag_values, n) for n in _given(flag_values, CONFIG_FLAGS)}
  return core.RunConfig().replace(**core.merge_overrides(overrides, given))


def command_line(module: str, flag_values: flags.FlagValues = FLAGS) -> str:
  """The command that reproduces this run: the module and the flags given."""
  given = [flag_values[n].serialize()
           for n in _given(flag_values, ("config",) + CONFIG_FLAGS)]
  return shlex.join(["python", "-m", module] + given)


def _fatal(message: str) -> None:
  print(f"FATAL {message}", file=sys.stderr)
  sys.exit(1)


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
  return "\n".join(lines)


def main(argv, module: str) -> dict:
  """Flags -> config -> plan -> `train.run`; returns results.json's content."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logs.import_tensorflow_quietly()
  from k4p1 import data  # pylint: disable=g-import-not-at-top
  from k4p1 import train  # pylint: disable=g-import-not-at-top
  logs.configure()
  try:
    config = build_config(FLAGS)
    # Before any other TensorFlow work: a multi-worker strategy configures
    # TensorFlow's collective ops, which is only possible at start-up.
    strategy = train.build_strategy(config.strategy, config.tpu_address)
    plan = train.resolve(config)
  except (train.WorkdirMismatchError, train.ClusterConfigError) as e:
    _fatal(f"{type(e).__name__}: {e}")
  except ValueError as e:
    _fatal(f"Flags parsing error: {e}\nPass --helpshort or --helpfull to see "
           "help on flags.")
  try:
    results = train.run(plan, command=command_line(module), strategy=strategy)
  except (data.DatasetNotPreparedError, train.WorkdirMismatchError) as e:
    # Problems the user fixes outside the code: the message says how.
    _fatal(f"{type(e).__name__}: {e}")
  except data.BadImageError as e:
    # Mid-run: the checkpoints written before it are intact.
    _fatal(f"{type(e).__name__}: {e} Rerun with the same --workdir to resume "
           "from the last checkpoint.")
  print(format_run_table(results))
  return results


define_flags()
