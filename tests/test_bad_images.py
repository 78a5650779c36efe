"""A folder image that passes the header check but does not decode.

Without `--skip_bad_images` it ends the run with one line naming the file (the
checkpoints before it intact); with it, the file is skipped and named.
"""

import json
import pathlib
import subprocess
import sys

import keras
import pytest
import tensorflow as tf

from k4p1 import data
from k4p1 import models
from k4p1 import train
from k4p1.data import folder
from k4p1.data import image_files
from test_data_folder import make_tree

REPO = pathlib.Path(__file__).resolve().parents[1]
# Training reads the bad file in its third step (batch 4, files 8 to 11 of the
# first epoch); bn_init's batch (files 0 to 3) does not reach it.
BAD_POSITION = 8
BATCH = 4


def _truncate(path: pathlib.Path) -> None:
  """Keeps the header (the resolve-time check passes), cuts the body."""
  body = path.read_bytes()
  path.write_bytes(body[:len(body) // 2])


def _training_order(info) -> list:
  """The training pipeline's first-epoch file order (seed 0)."""
  paths, labels = folder.split_files(info, "train", 0)
  stream = image_files._ordered_files(paths, labels, seed=0, repeat=False,  # pylint: disable=protected-access
                                      shuffle=True)
  return [p.decode() for p, _ in stream.as_numpy_iterator()]


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory):
  """(dataset root, the bad file, saved tiny base weights)."""
  tmp = tmp_path_factory.mktemp("bad_images")
  root = tmp / "zoo"
  make_tree(root, {"ant": 5, "bee": 5, "cow": 5})  # 4 train, 1 test per class.
  info = data.get_dataset_info(f"folder:{root}")
  bad = pathlib.Path(_training_order(info)[BAD_POSITION])
  _truncate(bad)
  keras.utils.set_random_seed(0)
  base = models.build_backbone("mobilenet_v2", 32, weights=None, alpha=0.35)
  weights = tmp / "base.weights.h5"
  base.save_weights(str(weights))
  return root, bad, weights


def _transfer(root, weights, workdir, *extra) -> subprocess.CompletedProcess:
  command = [sys.executable, "-m", "experiments.transfer",
             f"--dataset=folder:{root}", f"--weights={weights}",
             f"--workdir={workdir}", "--model=mobilenet_v2", "--alpha=0.35",
             "--image_size=32", f"--batch_size={BATCH}", "--train_steps=4",
             "--checkpoint_every=1", "--eval_every=0", "--summary_every=1",
             "--precise_bn_batches=1", *extra]
  return subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                        timeout=300)


def test_a_bad_file_ends_the_run_with_one_line_and_intact_checkpoints(
    bad_folder, tmp_path):
  root, bad, weights = bad_folder
  workdir = tmp_path / "run"
  run = _transfer(root, weights, workdir)
  assert run.returncode != 0
  assert "Traceback" not in run.stderr, run.stderr[-3000:]
  last = run.stderr.strip().splitlines()[-1]
  assert last.startswith("FATAL BadImageError: "), run.stderr[-3000:]
  assert str(bad) in last and "--skip_bad_images" in last and "remove" in last
  assert not (workdir / "results.json").exists()
  # Steps 1 and 2 were checkpointed; step 3 read the bad file.
  latest = tf.train.latest_checkpoint(str(workdir / "checkpoints"))
  assert latest is not None and latest.endswith("ckpt-2")
  reader = tf.train.load_checkpoint(latest)
  assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 2


def test_with_skip_bad_images_the_run_finishes_and_names_the_file(
    bad_folder, tmp_path):
  root, bad, weights = bad_folder
  workdir = tmp_path / "run"
  run = _transfer(root, weights, workdir, "--skip_bad_images")
  assert run.returncode == 0, run.stderr[-3000:]
  results = json.loads((workdir / "results.json").read_text())
  assert results["steps"] == 4
  skipped = [line for line in run.stderr.splitlines()
             if image_files.SKIPPED in line]
  assert skipped and all(str(bad) in line for line in skipped)
  assert "skip_bad_images: image files of folder datasets" in run.stderr
  config = json.loads((workdir / "config.json").read_text())["config"]
  assert config["skip_bad_images"] is True


def _two_bad_files(root: pathlib.Path) -> list:
  make_tree(root, {"ant": 4, "bee": 4, "cow": 4})
  bad = [root / "bee" / "img1.png", root / "cow" / "img3.png"]
  for path in bad:
    _truncate(path)
  return bad


@pytest.mark.parametrize("repeat,shuffle", [(False, False), (False, True),
                                            (True, True)])
def test_skipping_drops_and_names_exactly_the_bad_files(tmp_path, capfd,
                                                        repeat, shuffle):
  bad = _two_bad_files(tmp_path)
  info = data.get_dataset_info(f"folder:{tmp_path}", eval_fraction=0.25,
                               skip_bad_images=True)
  ds, count = image_files.examples(info, "train", seed=3, split_seed=0,
                                   repeat=repeat, shuffle=shuffle)
  assert count == 9  # Bad files are counted...
  epochs = 3 if repeat else 1
  # A finite pass read to its end (a `take` may stop before a last bad file).
  labels = [int(y) for _, y in (ds.take(7 * epochs) if repeat else ds)]
  assert len(labels) == 7 * epochs  # ...but not decoded.
  assert sorted(labels[:7]) == [0, 0, 0, 1, 1, 2, 2]
  named = [line for line in capfd.readouterr().err.splitlines()
           if image_files.SKIPPED in line]
  # Each bad file once: a repeated pipeline names them in its first epoch.
  assert sorted(named) == sorted(
      f'{image_files.SKIPPED} "{path}" (it cannot be read or decoded).'
      for path in bad)


def test_a_failing_pass_raises_bad_image_error_naming_the_file(tmp_path):
  bad = _two_bad_files(tmp_path / "my zoo")
  info = data.get_dataset_info(f"folder:{tmp_path / 'my zoo'}",
                               eval_fraction=0.25)
  ds = data.build_dataset(info, "train", global_batch_size=3, image_size=16,
                          training=False, architecture="mobilenet_v2")
  with pytest.raises(data.BadImageError) as raised:
    with data.naming_bad_images():
      list(ds)
  assert raised.value.path == str(bad[0])  # The first in file order.
  assert "--skip_bad_images" in str(raised.value)
  with pytest.raises(tf.errors.InvalidArgumentError):  # Other errors pass.
    with data.naming_bad_images():
      tf.debugging.assert_equal(1, 2)


def test_skip_bad_images_applies_to_folder_datasets_only():
  with pytest.raises(ValueError, match="skip_bad_images=True applies to "
                     "'folder:...' datasets only"):
    data.get_dataset_info("digits", skip_bad_images=True)
  with pytest.raises(ValueError, match="skip_bad_images applies to "
                     "folder:DIR datasets .* no task is one"):
    train.resolve(train.RunConfig(workdir="/tmp/unused", dataset="digits",
                                  skip_bad_images=True))


def test_skipping_every_file_is_refused_instead_of_looping_forever(tmp_path):
  root = tmp_path / "broken"
  make_tree(root, {"ant": 3, "bee": 3})
  for path in root.rglob("*.*"):
    if path.is_file():
      _truncate(path)
  info = data.get_dataset_info(f"folder:{root}", skip_bad_images=True,
                               eval_fraction=0.34)
  with pytest.raises(ValueError, match=r"No image file of split 'train'.*"
                     "skip_bad_images would leave nothing"):
    data.build_dataset(info, "train", global_batch_size=2, image_size=16,
                       training=True, architecture="mobilenet_v2")
