"""A validation split carved out of a training split (`validation_fraction`).

```python
info = data.get_dataset_info("mnist5k", validation_fraction=0.2)
info.train_split, info.validation_split   # "train" (320 per class), "validation"
info = data.get_dataset_info("cifar10", validation_fraction=0.2)
info.train_split, info.validation_split   # "train[:80%]", "train[80%:]"
```
`with_validation` returns the `DatasetInfo` whose training split excludes the
validation examples, so every reader of `info.train_split` (training,
PreciseBN, feature caching, int8 calibration) and `train_examples` see the
reduced set; `info.validation_split` names the held-out part.

* Offline and folder datasets: each class of the training split gives
  round(fraction * n_c) examples to "validation", drawn by a permutation
  seeded with (split seed, original label, a stream of its own): stratified,
  seeded (`build_dataset`'s `split_seed`, the one of the train/test holdout),
  the same examples of a class whatever the label subset, exact counts.
* TFDS datasets: the last `fraction` of the training split in TFDS's record
  order (`train[80%:]`; each part of a `train+validation` split sliced
  alike). TFDS shuffles records once when it prepares a dataset, so this is
  a fixed pseudo-random subset, but it is not stratified and does not depend
  on the seed (see BUILD_NOTES.md, "Validation split").
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from k4p1.data import registry

VALIDATION_SPLIT = "validation"
# The splits offline and folder datasets read, and the one they carve from.
TRAIN_SPLIT = "train"
# Third entropy word of the per-class permutation: the validation draw is
# independent of the train/test holdout's ([seed, label]).
_STREAM = 1


def check_fraction(fraction) -> float:
  """Returns `fraction` as a float if it is in (0, 1); else raises ValueError."""
  if (isinstance(fraction, bool) or
      not isinstance(fraction, (int, float, np.floating)) or
      not 0.0 < fraction < 1.0):
    raise ValueError(f"validation_fraction must be a number in (0, 1) (the "
                     "fraction of each class of the training split held out "
                     f"for validation), got {fraction!r}.")
  return float(fraction)


def validation_count(num_examples: int, fraction: float) -> int:
  """Examples of a class of `num_examples` that go to validation."""
  return int(np.floor(fraction * num_examples + 0.5))


def validation_indices(labels: np.ndarray, fraction: float,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Splits training examples per class into (train, validation) indices.

  Args:
    labels: int labels [N] of the training split (original labels, so that
      a class's draw does not depend on a label subset).
    fraction: fraction of each class held out, in (0, 1).
    seed: split seed.

  Returns:
    Sorted int64 index arrays (train, validation); disjoint, together all of
    [0, N).
  """
  fraction = check_fraction(fraction)
  train, held = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    rng = np.random.default_rng([seed, int(label), _STREAM])
    members = rng.permutation(members)
    count = validation_count(len(members), fraction)
    held.append(members[:count])
    train.append(members[count:])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


def source_split(info: registry.DatasetInfo, split: str) -> str:
  """The split of an offline or folder dataset that `split` is read from."""
  if split == VALIDATION_SPLIT and info.validation_split == VALIDATION_SPLIT:
    return TRAIN_SPLIT
  return split


def carve(info: registry.DatasetInfo, split: str, labels: np.ndarray,
          split_seed: int = 0) -> Optional[np.ndarray]:
  """Indices of `split`'s examples among the training examples' `labels`.

  Args:
    info: an offline or folder dataset.
    split: the split asked for.
    labels: labels (of `info`'s label subset, renumbered) of its source split.
    split_seed: seed of the draw.

  Returns:
    The indices to keep, or None when `split` is not carved (no validation,
    or the test split).
  """
  if info.validation_split != VALIDATION_SPLIT or split not in (
      TRAIN_SPLIT, VALIDATION_SPLIT):
    return None
  original = np.asarray(labels)
  if info.label_subset is not None:
    original = np.asarray(info.label_subset)[original]
  train, held = validation_indices(original, info.validation_fraction,
                                   split_seed)
  return train if split == TRAIN_SPLIT else held


def _percent(value: float) -> str:
  """A TFDS slice percentage without an exponent: 80.0 -> "80"."""
  return f"{value:.6f}".rstrip("0").rstrip(".")


def _tfds_splits(info: registry.DatasetInfo, fraction: float):
  """(train slice, validation slice, kept percent) of a TFDS training split."""
  parts = [p.strip() for p in info.train_split.split("+")]
  if any("[" in p for p in parts):
    raise ValueError(f"{info.name!r} trains on {info.train_split!r}, already "
                     "a slice: validation_fraction cannot slice it again.")
  kept = _percent(100.0 * (1.0 - fraction))
  return ("+".join(f"{p}[:{kept}%]" for p in parts),
          "+".join(f"{p}[{kept}%:]" for p in parts), float(kept))


def _with_tfds_validation(info, fraction) -> registry.DatasetInfo:
  train, held, kept_pct = _tfds_splits(info, fraction)
  base = info.base_num_train_examples
  # TFDS's own rounding (closest); for a `train+validation` split it rounds
  # each part, so the count can be off by one per part.
  base_kept = None if base is None else int(round(kept_pct * base / 100.0))
  whole = info.label_subset is None
  return dataclasses.replace(
      info, train_split=train, validation_split=held,
      validation_fraction=fraction,
      num_train_examples=base_kept if whole else None,
      num_validation_examples=(base - base_kept) if whole and base else None,
      train_examples_per_class=None, validation_examples_per_class=None,
      base_num_train_examples=base_kept)


def with_validation(info: registry.DatasetInfo,
                    fraction: float) -> registry.DatasetInfo:
  """`info` with `fraction` of its training split held out as validation.

  See the module docstring for how each kind of dataset is split.

  Raises:
    ValueError: a fraction outside (0, 1); a fraction that leaves a class no
      training example or holds out no example at all; a TFDS training split
      that is already a slice.
  """
  fraction = check_fraction(fraction)
  if info.validation_split is not None:
    raise ValueError(f"{info.name!r} already has a validation split.")
  if info.source == registry.SOURCE_TFDS:
    return _with_tfds_validation(info, fraction)
  per_class = info.train_examples_per_class
  if per_class is None:
    raise ValueError(f"{info.name!r} has no per-class training counts: "
                     "validation_fraction cannot split it.")
  held = tuple(validation_count(n, fraction) for n in per_class)
  train = tuple(n - h for n, h in zip(per_class, held))
  classes = info.class_names or range(len(per_class))
  starved = [c for c, n in zip(classes, train) if n == 0]
  if starved:
    raise ValueError(f"validation_fraction {fraction} holds out every "
                     f"training example of class(es) {starved} of "
                     f"{info.name!r}, leaving none to train on; lower it.")
  if not sum(held):
    raise ValueError(f"validation_fraction {fraction} holds out no example of "
                     f"{info.name!r} ({sum(per_class)} training examples); "
                     "raise it.")
  base = info.base_num_train_examples
  if info.label_subset is None:
    base = sum(train)
  elif base is not None:  # Only sizes the epoch of an unsized subset.
    base -= validation_count(base, fraction)
  return dataclasses.replace(
      info, validation_split=VALIDATION_SPLIT, validation_fraction=fraction,
      num_train_examples=sum(train), num_validation_examples=sum(held),
      train_examples_per_class=train, validation_examples_per_class=held,
      base_num_train_examples=base)
