r"""Offline transfer-learning demo: pretrain on digits 0-4, patch onto 5-9.

  python -m experiments.demo                 # ~4 minutes on 2 CPU cores

1. A small MobileNetV2 (alpha 0.35, 32 px) is trained from scratch, every
   weight, on `mnist5k:0-4` (the MNIST digits shipped inside k4p1).
2. That backbone is frozen and each patch (`logits`, `scale_bias+logits`,
   `depthwise+logits`, `scale_bias+depthwise+logits`, and `full` fine-tuning
   for comparison) is trained on the other half, `mnist5k:5-9`.
3. A Markdown table of accuracy, trained parameters, stored parameters, patch
   file size and wall time is printed and written to `<workdir>/table.md`.

The demo is a config, `experiments/configs/demo.py`, and one call,
`run_demo`. Its flags are `experiments.run`'s (one per `RunConfig` field,
their defaults the demo config's) for every run, plus `--patches` (the patch
runs), `--pretrain_dataset` and `--pretrain_steps` (the backbone's run);
`--steps` is `--train_steps`, the patch runs' length.
Everything (checkpoints, TensorBoard logs, patches, JSON) goes under
`--workdir`; `tensorboard --logdir <workdir>` shows every run. Rerunning with
the same workdir reuses finished runs. No network and no files outside the
installed package are needed.
"""

import os
import time
from typing import Any, Mapping, Sequence

from absl import app
from absl import flags
from absl import logging

from experiments import config_flags
from experiments import logs
from experiments.configs import demo as demo_config
from k4p1 import atomic
from k4p1 import core
from k4p1 import workdir as workdir_lib

MODULE = "experiments.demo"
# The demo's own flags, beside the config's.
DEMO_FLAGS = ("patches", "pretrain_dataset", "pretrain_steps")
FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """The config's flags, starting from the demo config, and the demo's own."""
  config_flags.define_flags(flag_values)
  if "patches" not in flag_values:
    args = dict(flag_values=flag_values)
    flags.DEFINE_list("patches", list(demo_config.PATCHES),
                      "Patch specs to train on the backbone, one run each.",
                      **args)
    flags.DEFINE_string("pretrain_dataset", demo_config.PRETRAIN["dataset"],
                        "Dataset the backbone is trained on from scratch.",
                        **args)
    flags.DEFINE_integer("pretrain_steps", demo_config.PRETRAIN["train_steps"],
                         "Steps of the backbone's training.", **args)
    flags.DEFINE_alias("steps", "train_steps", **args)
  config_flags.start_from("demo", flag_values)


def run_demo(config: core.RunConfig,
             patch_specs: Sequence[str] = demo_config.PATCHES,
             pretrain: Mapping[str, Any] = demo_config.PRETRAIN,
             command=None) -> dict:
  """Trains a backbone, then each patch on it; returns the rows.

  Args:
    config: every patch run's settings; `config.workdir` holds the runs
      (`pretrain/`, then one directory per patch).
    patch_specs: one patch run each, on the backbone.
    pretrain: the backbone run's settings on top of `config` (it trains
      every weight: `train.pretrain_backbone`).
    command: the command line every run records.

  Returns:
    {"pretrain": results of the backbone run, "rows": [one dict per patch:
    patch, accuracy, trained_params, stored_params, patch_bytes, wall_s],
    "steps", "dataset", "wall_s"}.
  """
  logs.import_tensorflow_quietly()
  from k4p1 import train  # pylint: disable=g-import-not-at-top
  logging.info("Demo: a MobileNetV2 (alpha %s, %s px) trained from scratch on "
               "%s, then %d patches of it trained on %s. Logs, checkpoints and "
               "TensorBoard under %s.", config.alpha, config.image_size,
               pretrain["dataset"], len(patch_specs), config.dataset,
               config.workdir)
  began = time.time()
  backbone = config.replace(**core.merge_overrides(
      {}, dict(pretrain, workdir=os.path.join(config.workdir, "pretrain"))))
  pretrained = train.pretrain_backbone(backbone, command=command)
  rows = []
  for spec in patch_specs:
    started = time.time()
    results = train.run(config.replace(
        workdir=os.path.join(config.workdir, spec.replace("+", "_")),
        weights=pretrained["backbone_weights"], patch=spec), command=command)
    rows.append({
        "patch": results["patch"],
        "accuracy": next(iter(results["tasks"].values()))["accuracy"],
        "trained_params": results["params"]["patch_trainable"],
        "stored_params": results["params"]["patch_stored"],
        "patch_bytes": results["patch_file_bytes"],
        "wall_s": time.time() - started,
    })
  return {"pretrain": pretrained, "rows": rows, "steps": config.train_steps,
          "dataset": config.dataset, "wall_s": time.time() - began}


def format_table(demo: dict) -> str:
  """The demo's Markdown table."""
  pretrain = demo["pretrain"]
  pretrain_task = next(iter(pretrain["tasks"].values()))
  lines = [
      f"Backbone: MobileNetV2 alpha {pretrain['config']['alpha']} at "
      f"{pretrain['image_size']} px, trained from scratch for "
      f"{pretrain['steps']} steps on {pretrain_task['dataset']} (eval "
      f"accuracy {pretrain_task['accuracy']:.3f}); patches trained for "
      f"{demo['steps']} steps on {demo['dataset']}.",
      "",
      "| patch | accuracy | trained params | stored params | patch file bytes | wall s |",
      "|---|---|---|---|---|---|",
  ]
  for row in demo["rows"]:
    lines.append(f"| {row['patch']} | {row['accuracy']:.3f} | "
                 f"{row['trained_params']:,} | {row['stored_params']:,} | "
                 f"{row['patch_bytes']:,} | {row['wall_s']:.0f} |")
  lines.append("")
  runtime = pretrain.get("runtime", {})
  kernels = {True: "on", False: "off"}.get(runtime.get("onednn"), "unknown")
  lines.append(f"Total wall time {demo['wall_s']:.0f} s. TensorFlow "
               f"{runtime.get('tensorflow', '?')}, CPU kernels: oneDNN {kernels} "
               "(they round differently: tables from one setting only).")
  return "\n".join(lines)


def run_from_flags(argv) -> dict:
  """The parsed flags -> the demo config -> `run_demo`; prints and writes the table."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logs.import_tensorflow_quietly()
  logs.configure(compact=True)
  try:
    config = config_flags.build_config(FLAGS)
  except ValueError as e:
    logs.fatal(f"Flags parsing error: {e}")
  pretrain = dict(demo_config.PRETRAIN, dataset=FLAGS.pretrain_dataset,
                  train_steps=FLAGS.pretrain_steps)
  command = config_flags.command_line(MODULE, FLAGS, DEMO_FLAGS)
  demo = run_demo(config, FLAGS.patches, pretrain, command=command)
  table = format_table(demo)
  os.makedirs(config.workdir, exist_ok=True)
  atomic.write_text_atomic(os.path.join(config.workdir, "table.md"), table + "\n")
  workdir_lib.write_json_atomic(os.path.join(config.workdir, "demo.json"),
                                {"rows": demo["rows"], "wall_s": demo["wall_s"]})
  print(table)
  return demo


def app_main(argv) -> None:
  """absl's main: `run_from_flags`, returning nothing (absl exits with it)."""
  run_from_flags(argv)


def main(argv=None) -> None:
  """Defines the flags, parses `argv` (default: the command line), runs the demo."""
  define_flags()
  app.run(app_main, argv=argv)


if __name__ == "__main__":
  main()
