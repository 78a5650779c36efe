r"""Offline transfer-learning demo: pretrain on digits 0-4, patch onto 5-9.

  python -m experiments.demo                 # ~4 minutes on 2 CPU cores

1. A small MobileNetV2 (alpha 0.35, 32 px) is trained from scratch, every
   weight, on `mnist5k:0-4` (the MNIST digits shipped inside k4p1).
2. That backbone is frozen and each patch (`logits`, `scale_bias+logits`,
   `depthwise+logits`, `scale_bias+depthwise+logits`, and `full` fine-tuning
   for comparison) is trained on the other half, `mnist5k:5-9`.
3. A Markdown table of accuracy, trained parameters, stored parameters, patch
   file size and wall time is printed and written to `<workdir>/table.md`.

Everything (checkpoints, TensorBoard logs, patches, JSON) goes under
`--workdir`; `tensorboard --logdir <workdir>` shows every run. Rerunning with
the same workdir reuses finished runs. No network and no files outside the
installed package are needed.
"""

import os
import shlex
import time

from absl import app
from absl import flags
from absl import logging

from experiments import logs
from k4p1 import atomic
from k4p1 import core
from k4p1 import workdir as workdir_lib

DEMO_PATCHES = ("logits", "scale_bias+logits", "depthwise+logits",
                "scale_bias+depthwise+logits", "full")

flags.DEFINE_string("workdir", "/tmp/k4p1_demo", "Output directory.")
flags.DEFINE_string("pretrain_dataset", "mnist5k:0-4", "Dataset the backbone "
                    "is pretrained on.")
flags.DEFINE_string("dataset", "mnist5k:5-9", "Dataset the patches learn.")
flags.DEFINE_list("patches", list(DEMO_PATCHES), "Patch specs to train.")
flags.DEFINE_float("alpha", 0.35, "MobileNetV2 width multiplier.")
flags.DEFINE_integer("image_size", 32, "Input size in pixels.")
flags.DEFINE_integer("batch_size", 64, "Global batch size.")
flags.DEFINE_integer("pretrain_steps", 600, "Steps of backbone pretraining.")
flags.DEFINE_integer("steps", 200, "Steps of each patch's training.")
flags.DEFINE_float("learning_rate", core.defaults.PAPER_LEARNING_RATE,
                   f"Learning rate per {core.defaults.REFERENCE_BATCH} images "
                   "(the paper's recipe; scaled with the batch size).")
flags.DEFINE_float("bn_momentum", None, "Momentum of training-mode BN layers "
                   "(default: the model's, Keras' 0.999; PreciseBN sets the "
                   "statistics that evaluation and the patches use).")
flags.DEFINE_integer("precise_bn_batches", core.RunConfig.precise_bn_batches,
                     "PreciseBN batches (0: keep the moving averages).")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_bool("deterministic", True, "TensorFlow op determinism: the same "
                  "table on every run of the same build and machine.")
flags.DEFINE_string("data_dir", None, "Directory with another mnist_5k.csv.gz.")

FLAGS = flags.FLAGS
_DEMO_FLAGS = ("workdir", "pretrain_dataset", "dataset", "patches", "alpha",
               "image_size", "batch_size", "pretrain_steps", "steps",
               "learning_rate", "bn_momentum", "precise_bn_batches", "seed",
               "deterministic", "data_dir")


def run_demo(workdir: str, pretrain_dataset: str, dataset: str, patch_specs,
             alpha: float, image_size: int, batch_size: int,
             pretrain_steps: int, steps: int, learning_rate: float,
             bn_momentum=None, seed: int = 0, data_dir=None,
             command=None,
             precise_bn_batches: int = core.RunConfig.precise_bn_batches,
             deterministic: bool = True) -> dict:
  """Pretrains a backbone, then trains each patch on it; returns the rows.

  Returns:
    {"pretrain": results of the backbone run, "rows": [one dict per patch:
    patch, accuracy, trained_params, stored_params, patch_bytes, wall_s],
    "steps", "dataset", "wall_s"}.
  """
  logs.import_tensorflow_quietly()
  from k4p1 import train  # pylint: disable=g-import-not-at-top
  logging.info("Demo: a MobileNetV2 (alpha %s, %d px) trained from scratch on "
               "%s, then %d patches of it trained on %s. Logs, checkpoints and "
               "TensorBoard under %s.", alpha, image_size, pretrain_dataset,
               len(patch_specs), dataset, workdir)
  common = dict(model="mobilenet_v2", alpha=alpha, image_size=image_size,
                batch_size=batch_size, learning_rate=learning_rate,
                bn_momentum=bn_momentum, seed=seed, data_dir=data_dir,
                precise_bn_batches=precise_bn_batches,
                deterministic=deterministic, eval_every=0, checkpoint_every=100, summary_every=10)
  began = time.time()
  pretrain = train.pretrain_backbone(train.RunConfig(
      workdir=os.path.join(workdir, "pretrain"), weights=None,
      dataset=pretrain_dataset, train_steps=pretrain_steps, **common),
      command=command)
  rows = []
  for spec in patch_specs:
    started = time.time()
    results = train.run(train.RunConfig(
        workdir=os.path.join(workdir, spec.replace("+", "_")),
        weights=pretrain["backbone_weights"], dataset=dataset, patch=spec,
        train_steps=steps, **common), command=command)
    rows.append({
        "patch": results["patch"],
        "accuracy": next(iter(results["tasks"].values()))["accuracy"],
        "trained_params": results["params"]["patch_trainable"],
        "stored_params": results["params"]["patch_stored"],
        "patch_bytes": results["patch_file_bytes"],
        "wall_s": time.time() - started,
    })
  return {"pretrain": pretrain, "rows": rows, "steps": steps, "dataset": dataset,
          "wall_s": time.time() - began}


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
  lines.append(f"Total wall time {demo['wall_s']:.0f} s.")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logs.import_tensorflow_quietly()
  logs.configure(compact=True)
  demo = run_demo(
      FLAGS.workdir, FLAGS.pretrain_dataset, FLAGS.dataset, FLAGS.patches,
      alpha=FLAGS.alpha, image_size=FLAGS.image_size,
      batch_size=FLAGS.batch_size, pretrain_steps=FLAGS.pretrain_steps,
      steps=FLAGS.steps, learning_rate=FLAGS.learning_rate,
      bn_momentum=FLAGS.bn_momentum, seed=FLAGS.seed, data_dir=FLAGS.data_dir,
      precise_bn_batches=FLAGS.precise_bn_batches,
      deterministic=FLAGS.deterministic,
      command=shlex.join(["python", "-m", "experiments.demo"] +
                         [FLAGS[name].serialize() for name in _DEMO_FLAGS
                          if FLAGS[name].value is not None]))
  table = format_table(demo)
  os.makedirs(FLAGS.workdir, exist_ok=True)
  atomic.write_text_atomic(os.path.join(FLAGS.workdir, "table.md"), table + "\n")
  workdir_lib.write_json_atomic(os.path.join(FLAGS.workdir, "demo.json"),
                                {"rows": demo["rows"], "wall_s": demo["wall_s"]})
  print(table)


if __name__ == "__main__":
  app.run(main)
