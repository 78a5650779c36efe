"""Offline datasets of real digits: mnist5k, mnistm5k and digits.

`mnist5k` reads `mnist_5k.csv.gz` (784 pixel values 0-255 then the label, one
image per row): the copy shipped in `k4p1/data/files/` by default, or any file
the caller names. `mnistm5k` is the same 5,000 digits, labels and order
blended with colour photographs as MNIST-M was (mnistm.py: generated once,
then cached on disk). `digits` is scikit-learn's `load_digits` (8x8, values
0-16, rescaled here to 0-255). Decoded arrays are cached in memory, so
building many pipelines over them (one per task and resolution) costs one
parse.

Splits hold out a fixed fraction of every class for evaluation, chosen by a
seeded permutation per class: the same seed gives the same split everywhere.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from typing import Optional, Sequence

from absl import logging
import numpy as np

from k4p1.data import mnistm

MNIST5K_FILENAME = "mnist_5k.csv.gz"
PACKAGED_MNIST5K = pathlib.Path(__file__).resolve().parent / "files" / MNIST5K_FILENAME
EVAL_FRACTION = 0.2
OFFLINE_DATASETS = ("mnist5k", "mnistm5k", "digits")
SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class ArraySplit:
  """Images uint8 [N, H, W, C] (C = 1, 3 for mnistm5k) and labels int32 [N]."""
  images: np.ndarray
  labels: np.ndarray


@functools.lru_cache(maxsize=8)
def _load_mnist5k_cached(path: str) -> tuple[np.ndarray, np.ndarray]:
  try:
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
  except (OSError, ValueError) as e:
    raise ValueError(f"Cannot read MNIST CSV {path!r}: {e}. Expected rows of 784 "
                     "pixel values 0-255 followed by the label.") from e
  if table.ndim != 2 or table.shape[1] != 785:
    raise ValueError(f"{path!r} has rows of {table.shape[-1]} values; an MNIST "
                     "CSV row is 784 pixels then the label (785 values).")
  pixels, labels = table[:, :784], table[:, 784]
  if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
    raise ValueError(f"{path!r}: pixels must be 0-255 and labels 0-9.")
  images = pixels.astype(np.uint8).reshape(-1, 28, 28, 1)
  images.setflags(write=False)
  labels = labels.astype(np.int32)
  labels.setflags(write=False)
  logging.debug("Read %s MNIST images from %s", len(labels), path)
  return images, labels


def load_mnist5k(path: Optional[os.PathLike] = None) -> tuple[np.ndarray, np.ndarray]:
  """Reads an MNIST CSV (default: the copy shipped with k4p1).

  Args:
    path: a `.csv` or `.csv.gz` file; None for the packaged `mnist_5k.csv.gz`.

  Returns:
    (images uint8 [N, 28, 28, 1], labels int32 [N]), read-only and cached.

  Raises:
    ValueError: if the file is missing or not in the MNIST CSV layout.
  """
  path = pathlib.Path(path) if path is not None else PACKAGED_MNIST5K
  if not path.is_file():
    raise ValueError(f"MNIST CSV {str(path)!r} does not exist.")
  return _load_mnist5k_cached(str(path.resolve()))


@functools.lru_cache(maxsize=1)
def load_digits() -> tuple[np.ndarray, np.ndarray]:
  """Returns scikit-learn's digits as (uint8 [1797, 8, 8, 1] 0-255, int32 [1797])."""
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  # Values are 0..16 ink counts; 255/16 maps them onto the 0..255 pixel scale.
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int32)
  images.setflags(write=False)
  labels.setflags(write=False)
  return images, labels


@functools.lru_cache(maxsize=4)
def _load_mnistm5k_cached(digits_path: str, data_dir: Optional[str],
                          cache: str) -> tuple[np.ndarray, np.ndarray]:
  del cache  # Part of the key only: another cache may hold other files.
  images, labels = load_mnist5k(digits_path)
  return mnistm.load_mnistm5k(images, labels, data_dir)


def load_mnistm5k(data_dir: Optional[os.PathLike] = None
                  ) -> tuple[np.ndarray, np.ndarray]:
  """The mnist5k digits as MNIST-M: colour, same labels and order.

  Args:
    data_dir: a directory that may hold `mnist_5k.csv.gz` (else the packaged
      one), the generated `.npz` or the photos (see mnistm.py).

  Returns:
    (images uint8 [5000, 28, 28, 3], labels int32 [5000]), read-only and cached.

  Raises:
    DatasetNotPreparedError: the photos are needed but neither found nor
      fetchable; the message says how to provide them.
  """
  digits = str(mnist5k_path(data_dir).resolve())
  directory = None if data_dir is None else str(pathlib.Path(data_dir).resolve())
  return _load_mnistm5k_cached(digits, directory, str(mnistm.cache_dir()))


def mnist5k_path(data_dir: Optional[os.PathLike] = None) -> pathlib.Path:
  """Returns `<data_dir>/mnist_5k.csv.gz` if it exists, else the packaged file."""
  if data_dir is not None:
    candidate = pathlib.Path(data_dir) / MNIST5K_FILENAME
    if candidate.is_file():
      return candidate
    logging.info("%s not found; using the packaged copy %s", candidate,
                 PACKAGED_MNIST5K)
  return PACKAGED_MNIST5K


def holdout_indices(labels: np.ndarray, eval_fraction: float = EVAL_FRACTION,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Splits example indices per class into (train, eval), deterministically.

  Each class c keeps round(eval_fraction * n_c) examples for eval, drawn by a
  permutation seeded with (seed, c), so a class's split does not depend on the
  other classes.

  Args:
    labels: int labels [N].
    eval_fraction: fraction of each class held out, in (0, 1).
    seed: split seed.

  Returns:
    Sorted int64 index arrays (train, eval); disjoint, together all of [0, N).
  """
  if not 0.0 < eval_fraction < 1.0:
    raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}.")
  train, evaluation = [], []
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    rng = np.random.default_rng([seed, int(label)])
    members = rng.permutation(members)
    num_eval = int(np.floor(eval_fraction * len(members) + 0.5))
    evaluation.append(members[:num_eval])
    train.append(members[num_eval:])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(evaluation))


def load_split(name: str, split: str, label_subset: Optional[Sequence[int]] = None,
               data_dir: Optional[os.PathLike] = None, split_seed: int = 0,
               eval_fraction: float = EVAL_FRACTION) -> ArraySplit:
  """Returns one split of an offline dataset, optionally restricted to some labels.

  Args:
    name: "mnist5k", "mnistm5k" or "digits" (without label subset).
    split: "train" or "test".
    label_subset: original labels to keep, renumbered 0..n-1 in this order.
    data_dir: for mnist5k and mnistm5k, a directory holding another
      `mnist_5k.csv.gz`; for mnistm5k, also one that may hold its photos or
      its generated `.npz`.
    split_seed: seed of the per-class holdout.
    eval_fraction: fraction of each class in "test".

  Returns:
    ArraySplit with images uint8 [N, H, W, C] and labels int32 [N].

  Raises:
    ValueError: for an unknown dataset or split.
    DatasetNotPreparedError: mnistm5k's photos cannot be had.
  """
  if name not in OFFLINE_DATASETS:
    raise ValueError(f"Unknown offline dataset {name!r}; valid choices: "
                     f"{OFFLINE_DATASETS}.")
  if split not in SPLITS:
    raise ValueError(f"Unknown split {split!r} of {name!r}; valid choices: {SPLITS}.")
  if name == "mnist5k":
    images, labels = load_mnist5k(mnist5k_path(data_dir))
  elif name == "mnistm5k":
    images, labels = load_mnistm5k(data_dir)
  else:
    images, labels = load_digits()
  train_idx, eval_idx = holdout_indices(labels, eval_fraction, split_seed)
  indices = train_idx if split == "train" else eval_idx
  images, labels = images[indices], labels[indices]
  if label_subset is not None:
    size = max(int(labels.max()), max(label_subset)) + 1
    remap = np.full(size, -1, dtype=np.int32)
    remap[np.asarray(label_subset)] = np.arange(len(label_subset), dtype=np.int32)
    new_labels = remap[labels]
    keep = new_labels >= 0
    images, labels = images[keep], new_labels[keep]
  return ArraySplit(images=images, labels=labels)
