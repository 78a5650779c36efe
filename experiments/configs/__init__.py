"""Experiment configs: each module's `get_config()` returns overrides of defaults.

A config names the settings of one paper table or row; flags given on the
command line override it. `--config=<name>` loads `experiments/configs/<name>.py`
(or any `.py` file path).
"""

import importlib
import importlib.util
import os
import pkgutil


def available() -> list:
  """Names of the configs in this package."""
  return sorted(m.name for m in pkgutil.iter_modules(__path__)
                if not m.name.startswith("_"))


def load_overrides(name: str) -> dict:
  """Returns `get_config()` of the config `name` (a module here or a .py path).

  Raises:
    ValueError: no such config, or it has no `get_config()` returning a dict.
  """
  if name.endswith(".py"):
    if not os.path.isfile(name):
      raise ValueError(f"Config file {name!r} does not exist.")
    spec = importlib.util.spec_from_file_location("k4p1_user_config", name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  elif name in available():
    module = importlib.import_module(f"{__name__}.{name}")
  else:
    raise ValueError(f"Unknown config {name!r}; valid choices: "
                     f"{', '.join(available())} (or a path to a .py file).")
  get_config = getattr(module, "get_config", None)
  overrides = get_config() if callable(get_config) else None
  if not isinstance(overrides, dict):
    raise ValueError(f"Config {name!r} must define get_config() returning a "
                     "dict of overrides.")
  return overrides
