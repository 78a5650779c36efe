"""Workdirs at URLs: every file of a run goes through tf.io.gfile.

`ram://` (TensorFlow's in-memory filesystem, alive only inside this process)
stands in for gs://: the runs are in-process `train.run` calls. A transfer
and a multi-task run write every file there and nothing on the local disk;
patches, the export, LiteRT files, the report and a resume read them back.
"""

import contextlib
import os
import tempfile
import uuid

from absl.testing import flagsaver
import numpy as np
import pytest
import tensorflow as tf

from experiments import make_tables
from k4p1 import atomic
from k4p1 import data
from k4p1 import eval as eval_lib
from k4p1 import models
from k4p1 import paths
from k4p1 import patches
from k4p1 import report
from k4p1 import train
from k4p1 import workdir as workdir_lib
from k4p1.models import tf_checkpoints
from k4p1.patches import litert
from k4p1.train import checks
from helpers.summaries import event_tags

gfile = tf.io.gfile
TRANSFER_TASK = "mnist5k_5-9"
# TensorFlow's own files in the temp directory (autograph's generated code).
_TF_TEMP_FILES = ("__autograph_generated_file",)


def ram_root() -> str:
  return f"ram://k4p1-test-{uuid.uuid4().hex[:8]}"


def listing(root: str) -> set:
  """Every file under the URL `root`, relative to it."""
  return {paths.relative(os.path.join(parent, name), root)
          for parent, _, names in gfile.walk(root) for name in names}


# --- paths and atomic writes -------------------------------------------------


def test_paths_keep_urls_whole():
  assert paths.is_url("gs://b/run") and not paths.is_url("runs/a")
  assert paths.scheme("GS://b") == "gs" and paths.scheme("/tmp/a") == ""
  assert paths.absolute("ram://k/run/") == "ram://k/run"
  assert paths.absolute("runs") == os.path.abspath("runs")
  assert paths.basename("ram://k/run/") == "run"
  assert paths.relative("ram://k/run/patches/a.k4p1", "ram://k/run") == (
      os.path.join("patches", "a.k4p1"))
  assert paths.relative("ram://k/run/export", "ram://k/run/sequential/a") == (
      "../../export")
  with pytest.raises(ValueError, match="different filesystems"):
    paths.relative("ram://k/a", "/k")
  with pytest.raises(FileNotFoundError):
    paths.read_bytes(ram_root() + "/missing.json")


@pytest.mark.parametrize("object_store", [False, True])
def test_url_writes_replace_whole_files_and_leave_no_temp(object_store,
                                                          monkeypatch):
  root = ram_root()
  target = f"{root}/out/a.json"
  if object_store:  # gs:// and s3://: each file is one object write, no rename.
    monkeypatch.setattr(atomic, "OBJECT_STORES", ("ram",))
    monkeypatch.setattr(gfile, "rename", None)
    # (ram:// appends to an existing file where an object store replaces it.)
    atomic.write_text_atomic(target, "new")
  else:
    atomic.write_text_atomic(target, "old")
    atomic.write_text_atomic(target, "new")
  assert paths.read_text(target) == "new"
  with atomic.output_path(f"{root}/out/w.weights.h5") as tmp:
    assert not paths.is_url(tmp) and tmp.endswith(".w.weights.h5")
    with open(tmp, "wb") as f:
      f.write(b"weights")
  assert not os.path.exists(tmp)
  assert paths.read_bytes(f"{root}/out/w.weights.h5") == b"weights"
  assert listing(root) == {"out/a.json", "out/w.weights.h5"}


def test_url_output_dir_replaces_the_directory_and_keeps_it_on_failure():
  root = ram_root()
  export = f"{root}/export"
  with atomic.output_dir(export) as staging:
    gfile.makedirs(f"{staging}/variables")
    atomic.write_text_atomic(f"{staging}/variables/v", "1")
    atomic.write_text_atomic(f"{staging}/old_only", "1")
  with pytest.raises(RuntimeError, match="writer failed"):
    with atomic.output_dir(export) as staging:
      atomic.write_text_atomic(f"{staging}/saved_model.pb", "partial")
      raise RuntimeError("writer failed")
  assert listing(root) == {"export/variables/v", "export/old_only"}
  with atomic.output_dir(export) as staging:
    atomic.write_text_atomic(f"{staging}/saved_model.pb", "2")
  assert listing(root) == {"export/saved_model.pb"}


# --- inputs at URLs: weights, checkpoints, folder datasets, data_dir -----------


def test_tf_checkpoint_at_a_url_resolves():
  directory = f"{ram_root()}/ckpt"
  tf.train.Checkpoint(v=tf.Variable(1.0)).save(f"{directory}/model")
  prefix = tf_checkpoints.resolve_checkpoint_path(directory)
  assert prefix == f"{directory}/model-1"
  assert tf_checkpoints.resolve_checkpoint_path(prefix + ".index") == prefix


def _write_png(path: str, value: int) -> None:
  image = np.full([8, 8, 3], value, np.uint8)
  atomic.write_bytes_atomic(path, tf.io.encode_png(image).numpy())


def test_folder_dataset_at_a_url_lists_and_decodes():
  root = f"{ram_root()}/zoo"
  for label, name in enumerate(("cat", "dog")):
    for i in range(3):
      _write_png(f"{root}/{name}/{i}.png", 40 * label + i)
  info = data.get_dataset_info(f"folder:{root}", eval_fraction=0.34)
  assert info.num_classes == 2 and info.class_names == ("cat", "dog")
  batch = next(iter(data.build_dataset(info, info.train_split,
                                       global_batch_size=2, image_size=8,
                                       training=False, architecture="mobilenet_v2")))
  assert batch[0].shape == (2, 8, 8, 3)
  assert checks.default_task_name(f"folder:{root}") == "folder_zoo"

  atomic.write_bytes_atomic(f"{root}/dog/bad.png", b"not a png")
  with pytest.raises(ValueError, match="bad.png: not a JPEG"):
    data.get_dataset_info(f"folder:{root}")


@pytest.mark.parametrize("data_dir, dataset, fragment", [
    ("ram://k4p1/tfds", "cifar10", "etils.epath"),
    ("hdfs://nn/tfds", "mnist5k", "not hdfs://"),
    ("gs://bucket/tfds", "mnist5k:0-4", "from a local directory"),
])
def test_url_data_dir_is_refused_where_it_cannot_be_read(data_dir, dataset,
                                                         fragment):
  with pytest.raises(ValueError, match=fragment):
    train.resolve(train.RunConfig(workdir="w", dataset=dataset,
                                  data_dir=data_dir))


# --- end to end: runs on ram:// ------------------------------------------------


@contextlib.contextmanager
def _local_disk_watch(directory):
  """Runs the block in an empty cwd and temp dir; yields what they got."""
  cwd, tmp = directory / "cwd", directory / "tmp"
  cwd.mkdir()
  tmp.mkdir()
  before, saved = os.getcwd(), tempfile.tempdir
  new = {}
  os.chdir(cwd)
  tempfile.tempdir = str(tmp)
  try:
    yield new
  finally:
    os.chdir(before)
    tempfile.tempdir = saved
  new["cwd"] = sorted(os.listdir(cwd))
  new["tmp"] = sorted(n for n in os.listdir(tmp)
                      if not n.startswith(_TF_TEMP_FILES))


def _base_weights(root: str) -> str:
  """A random MobileNetV2 0.35 base saved at the URL; returns its path."""
  weights = f"{root}/base.weights.h5"
  workdir_lib.save_weights(
      models.build_backbone("mobilenet_v2", 32, weights=None, alpha=0.35),
      weights)
  return weights


_COMMON = dict(alpha=0.35, image_size=32, batch_size=8, eval_every=0,
               precise_bn_batches=2, summary_every=1)


def test_transfer_run_on_ram_writes_every_file_there_and_resumes(tmp_path):
  root = ram_root()
  with _local_disk_watch(tmp_path) as local:
    weights = _base_weights(root)
    transfer = dict(_COMMON, weights=weights, workdir=f"{root}/runs/transfer",
                    dataset="mnist5k:5-9", train_steps=2, checkpoint_every=1,
                    export_tflite=True)
    first = train.run(train.RunConfig(**transfer), command="first")
    first_files = listing(transfer["workdir"])
    resumed = train.run(train.RunConfig(**dict(transfer, train_steps=4)),
                        command="second")
  assert local == {"cwd": [], "tmp": []}
  assert not os.path.exists("ram:")
  runs = dict(root=root, weights=weights, first=first, first_files=first_files,
              resumed=resumed)
  _check_transfer_files(runs)
  _check_resume_and_patch(runs)


@pytest.mark.usefixtures("parsed_flags")
def test_multitask_run_on_ram_writes_every_file_there_and_make_tables_reads_it(
    tmp_path):
  root = ram_root()
  with _local_disk_watch(tmp_path) as local:
    train.run(train.RunConfig(
        **_COMMON, weights=_base_weights(root), workdir=f"{root}/runs/mt",
        train_steps=2, checkpoint_every=0,
        tasks=("mnist5k:0-1", "mnist5k:2-3")), command="mt")
  assert local == {"cwd": [], "tmp": []}
  assert not os.path.exists("ram:")
  _check_multitask_files(f"{root}/runs/mt")
  _check_make_tables(f"{root}/runs")


def _check_transfer_files(runs) -> None:
  """Every file of the transfer run is at the URL; no temp file, no lock."""
  files, results = runs["first_files"], runs["resumed"]
  assert {"config.json", "results.json", f"patches/{TRANSFER_TASK}.safetensors",
          f"tflite/{TRANSFER_TASK}.tflite", "checkpoints/checkpoint",
          "checkpoints/ckpt-2.index"} <= files
  assert not any(name.startswith((".tmp-", "run.lock")) or "/.tmp-" in name
                 for name in files)
  workdir = f"{runs['root']}/runs/transfer"
  assert event_tags(f"{workdir}/tensorboard")
  patch, tflite = (f"{workdir}/{results[k]}" for k in ("patch_file", "tflite_file"))
  assert results["patch_file_bytes"] == gfile.stat(patch).length
  assert results["tflite_file_bytes"] == gfile.stat(tflite).length
  assert litert.read_metadata(tflite)["tasks"] == [TRANSFER_TASK]
  config = workdir_lib.read_json(f"{workdir}/config.json")
  assert config["config"]["weights"] == runs["weights"]


def _check_resume_and_patch(runs) -> None:
  """The rerun resumed from the URL checkpoint; its patch loads from the URL."""
  resumed = runs["resumed"]
  assert runs["first"]["steps"] == 2
  assert resumed["resumed_from_step"] == 2 and resumed["steps"] == 4
  assert resumed["optimizer_steps"] == 4
  base = models.build_backbone("mobilenet_v2", 32, weights=runs["weights"],
                               alpha=0.35)
  task = patches.load_patch(
      base, f"{runs['root']}/runs/transfer/{resumed['patch_file']}")
  evaluation = data.build_dataset("mnist5k:5-9", "test", global_batch_size=50,
                                  image_size=32, training=False, architecture="mobilenet_v2")
  accuracy = eval_lib.evaluate_accuracy(task, evaluation)["accuracy"]
  assert accuracy == resumed["tasks"][TRANSFER_TASK]["accuracy"]


def _check_multitask_files(workdir: str) -> None:
  """Backbone, manifest, patches and a serving export at the URL."""
  files = listing(workdir)
  assert {"backbone.weights.h5", "tasks.json", "export/saved_model.pb",
          "patches/mnist5k_0-1.safetensors", "patches/mnist5k_2-3.safetensors"} <= files
  assert not any(".tmp-" in name or "run.lock" in name for name in files)
  manifest = workdir_lib.read_json(f"{workdir}/tasks.json")
  assert [t["name"] for t in manifest["tasks"]] == ["mnist5k_0-1", "mnist5k_2-3"]
  served = tf.saved_model.load(f"{workdir}/export")
  assert [n.decode() for n in served.task_names().numpy()] == [
      "mnist5k_0-1", "mnist5k_2-3"]
  images = tf.zeros([2, 32, 32, 3])
  logits = served.serve(images, tf.constant([0, 1], tf.int32)).numpy()
  base = models.build_backbone("mobilenet_v2", 32,
                               weights=f"{workdir}/backbone.weights.h5",
                               alpha=0.35)
  task = patches.load_patch(base, f"{workdir}/patches/mnist5k_2-3.safetensors")
  np.testing.assert_allclose(logits[1, :2], task(images[1:], training=False)[0],
                             rtol=1e-4, atol=1e-4)


def _check_make_tables(runs_dir: str) -> None:
  """The report finds the runs at the URL and writes its tables there."""
  (run,) = report.collect_runs(runs_dir)
  assert run.workdir == "mt" and run.path == f"{runs_dir}/mt/results.json"
  make_tables.define_flags()
  with flagsaver.flagsaver(results_dir=[runs_dir], format=["md", "csv"]):
    make_tables.app_main(["make_tables"])
  document = paths.read_text(f"{runs_dir}/tables.md")
  assert "mnist5k_2-3" in document and "`mt`: `mt`" in document
  assert gfile.exists(
      f"{runs_dir}/multitask_mobilenet_v2_mnist5k_0-1_mnist5k_2-3.csv")
