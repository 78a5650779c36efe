"""Tests of patch files: exact round trips, foreign bases, corrupt files, atomic writes."""

import gc
import io
import json
import os
import pathlib
import weakref
import zipfile

import keras
import numpy as np
import pytest
import safetensors
import safetensors.numpy

from k4p1 import atomic
from k4p1 import models
from k4p1 import patches
from test_patches_core import images
from test_patches_core import tiny_base
from test_patches_core import train_steps
from helpers import legacy_patch


def fresh_copy(base):
  """A new base object with the same weights (what a user rebuilds later)."""
  copy = models.build_backbone("mobilenet_v2", 32, weights=None, alpha=0.35)
  copy.set_weights(base.get_weights())
  return copy


@pytest.mark.parametrize("spec, bn_stats", [
    ("scale_bias+logits", "task"),
    ("scale_bias+depthwise+logits", "task"),
    ("bias+logits", "frozen"),
    ("scale+logits", "task"),
    ("depthwise+logits", "task"),
    ("full", "task"),
])
def test_round_trip_on_fresh_base_is_bit_identical(tmp_path, spec, bn_stats):
  base = tiny_base()
  task = patches.apply_patch(base, spec, task="t", num_classes=3, bn_stats=bn_stats)
  x = images()
  train_steps(task, x, np.arange(8) % 3)
  path = str(tmp_path / "t.safetensors")
  patches.save_patch(task, path)

  loaded = patches.load_patch(fresh_copy(base), path)
  np.testing.assert_array_equal(loaded(x, training=False).numpy(),
                                task(x, training=False).numpy())
  assert str(patches.patch_info(loaded).spec) == str(patches.patch_info(task).spec)
  assert patches.patch_info(loaded).bn_stats == bn_stats
  assert patches.count_params(loaded) == patches.count_params(task)
  assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]  # No temp files left.


def test_patch_is_a_safetensors_file_any_reader_opens(tmp_path):
  base = tiny_base()
  task = patches.apply_patch(base, "scale_bias+logits", task="t", num_classes=3)
  path = tmp_path / "t.safetensors"
  patches.save_patch(task, str(path))
  # Nothing of k4p1 needed: the safetensors package alone.
  arrays = safetensors.numpy.load_file(str(path))
  with safetensors.safe_open(str(path), framework="np") as f:
    metadata = f.metadata()
  keys = set(arrays)
  assert keys == set(patches.named_patch_variables(task))
  assert {"bn_Conv1/gamma", "bn_Conv1/moving_mean", "logits/kernel"} <= keys
  assert not any(k.startswith("Conv1/") for k in keys)  # Never the base.
  for key, variable in patches.named_patch_variables(task).items():
    np.testing.assert_array_equal(arrays[key], variable.numpy())
  spec = json.loads(metadata["k4p1"])
  assert metadata["format"] == "k4p1.patch" and metadata["format_version"] == "2"
  assert metadata["task"] == spec["task"] == "t"
  assert metadata["base_fingerprint"] == spec["base_fingerprint"]
  assert spec["spec"] == "logits+scale_bias" and spec["num_classes"] == 3
  assert sum(int(np.prod(s)) for s, _ in spec["variables"].values()) == \
      patches.count_params(task)["patch_stored"]
  # Equal patches are equal files.
  patches.save_patch(task, str(tmp_path / "again.safetensors"))
  assert (tmp_path / "again.safetensors").read_bytes() == path.read_bytes()


def test_first_format_files_still_load():
  """tests/data/patch_v1: a zip patch written on 2026-12-06 (format 1)."""
  directory = pathlib.Path(__file__).parent / "data" / "patch_v1"
  spec, _ = patches.read_patch_file(str(directory / "task.k4p1"))
  assert spec["format_version"] == 1
  task = patches.load_patch(legacy_patch.base(), str(directory / "task.k4p1"))
  assert str(patches.patch_info(task).spec) == "logits+scale_bias+depthwise"
  np.testing.assert_allclose(task(legacy_patch.images(), training=False).numpy(),
                             np.load(directory / "expected_logits.npy"),
                             rtol=1e-5, atol=1e-5)
  assert patches.patch_info(task).bn_init == {"method": "copy"}


def test_altered_tensor_is_refused(saved_patch):
  base, path = saved_patch
  data = bytearray(path.read_bytes())
  data[-5] ^= 0xFF  # A byte of the last tensor; the header stays valid.
  path.write_bytes(bytes(data))
  with pytest.raises(patches.PatchFileError, match="altered"):
    patches.load_patch(base, str(path))


def test_foreign_safetensors_file_is_not_a_patch(saved_patch):
  base, path = saved_patch
  safetensors.numpy.save_file({"w": np.zeros(3, np.float32)}, str(path),
                              metadata={"format": "pt"})
  with pytest.raises(patches.PatchFileError, match="not a k4p1 patch"):
    patches.load_patch(base, str(path))
  safetensors.numpy.save_file({"w": np.zeros(3, np.float32)}, str(path))
  with pytest.raises(patches.PatchFileError, match="not a k4p1 patch"):
    patches.load_patch(base, str(path))


def test_full_size_mobilenet_v2_sb_logits_patch_is_small(tmp_path):
  base = models.build_backbone("mobilenet_v2", 224, weights=None)
  task = patches.apply_patch(base, "scale_bias+logits", task="cifar10", num_classes=10)
  path = tmp_path / "cifar10.k4p1"
  patches.save_patch(task, str(path))
  # 81,034 float32 values; the issue bounds the file at 500 kB.
  assert os.path.getsize(path) < 500_000


def test_foreign_base_is_rejected_unless_not_strict(tmp_path):
  base = tiny_base(seed=0)
  task = patches.apply_patch(base, "scale_bias+logits", task="t", num_classes=3)
  path = str(tmp_path / "t.k4p1")
  patches.save_patch(task, path)
  other = tiny_base(seed=1)
  with pytest.raises(patches.PatchMismatchError, match="different weights"):
    patches.load_patch(other, path)
  loaded = patches.load_patch(other, path, strict=False)
  np.testing.assert_array_equal(
      patches.named_patch_variables(loaded)["bn_Conv1/gamma"].numpy(),
      patches.named_patch_variables(task)["bn_Conv1/gamma"].numpy())


def test_patch_for_another_architecture_is_a_mismatch(tmp_path):
  base = tiny_base()
  task = patches.apply_patch(base, "depthwise+logits", task="t", num_classes=3)
  path = str(tmp_path / "t.k4p1")
  patches.save_patch(task, path)
  inception = models.build_backbone("inception_v3", 75, weights=None)
  with pytest.raises(patches.PatchMismatchError, match="inception_v3"):
    patches.load_patch(inception, path)
  wider = models.build_backbone("mobilenet_v2", 32, weights=None, alpha=0.5)
  with pytest.raises(patches.PatchMismatchError, match="wrong shapes"):
    patches.load_patch(wider, path)


def test_full_patch_loads_onto_any_base_of_the_architecture(tmp_path):
  base = tiny_base(seed=0)
  task = patches.apply_patch(base, "full", task="t", num_classes=3)
  x = images()
  train_steps(task, x, np.arange(8) % 3, steps=1)
  path = str(tmp_path / "t.k4p1")
  patches.save_patch(task, path)
  loaded = patches.load_patch(tiny_base(seed=1), path)
  np.testing.assert_array_equal(loaded(x).numpy(), task(x).numpy())


def test_loaded_task_model_carries_its_info_and_is_garbage_collected(tmp_path):
  base = tiny_base()
  task = patches.apply_patch(base, "scale_bias+logits", task="t", num_classes=3)
  path = str(tmp_path / "t.k4p1")
  patches.save_patch(task, path)
  copy = fresh_copy(base)
  loaded = patches.load_patch(copy, path)
  assert patches.patch_info(loaded).base is copy
  assert patches.patch_info(loaded).bn_statistics == patches.patch_info(task).bn_statistics
  refs = [weakref.ref(task), weakref.ref(loaded)]
  del task, loaded
  gc.collect()
  assert [ref() for ref in refs] == [None, None]


def test_shared_head_patch_needs_the_head(tmp_path):
  base = tiny_base()
  head = keras.layers.Dense(3)
  task = patches.apply_patch(base, "scale_bias", task="r", head=head)
  path = str(tmp_path / "r.k4p1")
  patches.save_patch(task, path)
  with pytest.raises(patches.PatchMismatchError, match="pass head="):
    patches.load_patch(base, path)
  loaded = patches.load_patch(base, path, head=head)
  x = images()
  np.testing.assert_array_equal(loaded(x).numpy(), task(x).numpy())


@pytest.fixture
def saved_patch(tmp_path):
  base = tiny_base()
  task = patches.apply_patch(base, "scale_bias+logits", task="t", num_classes=3)
  path = tmp_path / "t.safetensors"
  patches.save_patch(task, str(path))
  return base, path


def _rewrite(path, members):
  with zipfile.ZipFile(path, "w") as z:
    for name, data in members.items():
      z.writestr(name, data)


def test_truncated_and_garbage_files_raise_patch_file_error(saved_patch):
  base, path = saved_patch
  data = path.read_bytes()
  legacy = (pathlib.Path(__file__).parent / "data" / "patch_v1" /
            "task.k4p1").read_bytes()
  for broken in (data[: len(data) // 2], data[:100], data[:-1], b"",
                 b"not a zip at all" * 10, legacy[: len(legacy) // 2]):
    path.write_bytes(broken)
    with pytest.raises(patches.PatchFileError, match="corrupt or truncated"):
      patches.load_patch(base, str(path))


def test_malformed_first_format_members_raise_patch_file_error(saved_patch):
  base, path = saved_patch
  legacy = pathlib.Path(__file__).parent / "data" / "patch_v1" / "task.k4p1"
  with zipfile.ZipFile(legacy) as z:
    spec, weights = z.read("spec.json"), z.read("weights.npz")
  cases = {
      "lacks": {"spec.json": spec},
      "not a k4p1 patch": {"spec.json": b'{"format": "other"}', "weights.npz": weights},
      "corrupt or truncated": {"spec.json": b"{not json", "weights.npz": weights},
      "format version": {"spec.json": spec.replace(b'"format_version": 1',
                                                    b'"format_version": 99'),
                         "weights.npz": weights},
  }
  pickled = io.BytesIO()
  np.savez(pickled, **{"bn_Conv1/gamma": np.array([{"a": 1}], dtype=object)})
  cases["corrupt or truncated (ValueError: Object arrays"] = {
      "spec.json": spec, "weights.npz": pickled.getvalue()}
  for fragment, members in cases.items():
    _rewrite(path, members)
    with pytest.raises(patches.PatchFileError) as e:
      patches.load_patch(base, str(path))
    assert fragment in str(e.value)
    assert str(path) in str(e.value)


def test_missing_file_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.k4p1"):
    patches.load_patch(tiny_base(), str(tmp_path / "nope.k4p1"))


def test_failed_save_leaves_previous_patch_intact(saved_patch, monkeypatch):
  _, path = saved_patch
  original = path.read_bytes()
  task = patches.apply_patch(tiny_base(seed=3), "logits", task="u", num_classes=2)

  def failing_replace(src, dst):
    raise OSError("disk full")

  monkeypatch.setattr(os, "replace", failing_replace)
  with pytest.raises(OSError, match="disk full"):
    patches.save_patch(task, str(path))
  assert path.read_bytes() == original
  assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_atomic_writes_get_the_modes_plain_writes_would(tmp_path):
  previous = os.umask(0o022)
  try:
    atomic.write_text_atomic(str(tmp_path / "a.json"), "{}")
    with atomic.output_dir(str(tmp_path / "export")) as staging:
      with open(os.path.join(staging, "f"), "w") as f:
        f.write("x")
  finally:
    os.umask(previous)
  assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
  assert (tmp_path / "export").stat().st_mode & 0o777 == 0o755
