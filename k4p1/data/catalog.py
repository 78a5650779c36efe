"""`get_dataset_info`: every dataset name k4p1 takes, resolved into a DatasetInfo.

* a registry name, optionally with a label subset: `"cifar10"`,
  `"mnist5k:0-4"` (registry.py);
* `"folder:DIR"`: your own images, one subfolder per class (folder.py); no
  label subset (everything after `folder:` is the path, colons included);
* `"tfds:NAME[/CONFIG][:labels]"`: any TFDS image classification dataset
  (tfds_any.py).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

from k4p1 import architectures
from k4p1.data import folder
from k4p1.data import registry
from k4p1.data import tfds_any
from k4p1.data import tfds_source
from k4p1.data import validation


def _check_applies(name: str, field: str, value, prefix: str) -> None:
  if value is not None and not name.startswith(prefix):
    raise ValueError(f"{field}={value!r} applies to '{prefix}...' datasets "
                     f"only, not {name!r}.")


def get_dataset_info(name: str, *, data_dir: Optional[os.PathLike] = None,
                     eval_fraction: Optional[float] = None,
                     image_key: Optional[str] = None,
                     label_key: Optional[str] = None,
                     manual_dir: Optional[os.PathLike] = None,
                     download: bool = True,
                     validation_fraction: Optional[float] = None,
                     skip_bad_images: bool = False
                     ) -> registry.DatasetInfo:
  """Resolves a dataset name (see the module docstring) into its DatasetInfo.

  Args:
    name: `"cifar10"`, `"mnist5k:0-4"`, `"folder:DIR"`, `"tfds:beans"`, ...
    data_dir: TFDS data directory of `tfds:` datasets, whose metadata
      (splits, sizes) must be prepared; None for TFDS's default.
    eval_fraction: `folder:` datasets without train/ and test/ folders: the
      fraction of each class held out for evaluation (None: 0.2).
    image_key: `tfds:` datasets: the image feature (default: found).
    label_key: `tfds:` datasets: the ClassLabel feature (default: found).
    manual_dir, download: `tfds:` datasets: as `prepared_builder`.
    validation_fraction: hold out this fraction of the training split as a
      validation split (validation.py); None: no validation split.
    skip_bad_images: `folder:` datasets: drop image files that fail to
      decode instead of stopping (image_files.py).

  Returns:
    The DatasetInfo; for a label subset, classes and counts are the subset's.

  Raises:
    ValueError: an unknown dataset, a bad label subset, a folder or TFDS
      dataset k4p1 cannot read (the message says why and what is valid), a
      keyword given for a kind of dataset it does not apply to, or a
      validation_fraction that leaves a class nothing to train on.
    DatasetNotPreparedError: a `tfds:` dataset is not prepared and cannot be.
  """
  if not isinstance(name, str):
    raise ValueError(f"Dataset name must be a string, got {name!r}.")
  _check_applies(name, "eval_fraction", eval_fraction, registry.FOLDER_PREFIX)
  _check_applies(name, "image_key", image_key, registry.TFDS_PREFIX)
  _check_applies(name, "label_key", label_key, registry.TFDS_PREFIX)
  _check_applies(name, "skip_bad_images", skip_bad_images or None,
                 registry.FOLDER_PREFIX)
  if name.startswith(registry.FOLDER_PREFIX):
    info = folder.folder_info(name[len(registry.FOLDER_PREFIX):], eval_fraction)
    info = dataclasses.replace(info, skip_bad_images=bool(skip_bad_images))
  elif name.startswith(registry.TFDS_PREFIX):
    info = tfds_any.tfds_info(name, data_dir=data_dir, image_key=image_key,
                              label_key=label_key, manual_dir=manual_dir,
                              download=download)
  else:
    info = registry.lookup(name)
  if validation_fraction is None:
    return info
  return validation.with_validation(info, validation_fraction)


def split_names(name: str) -> tuple[str, str]:
  """Returns `(train_split, eval_split)` of a dataset."""
  info = get_dataset_info(name)
  return info.train_split, info.eval_split


def default_image_size(name: "str | registry.DatasetInfo",
                       architecture: str) -> int:
  """Returns the input size the paper uses for `name` with `architecture`.

  Places365 is 256 px whatever the network; other TFDS datasets and folder
  datasets take the architecture's size (224, 299 for InceptionV3); offline
  datasets keep their own small default.

  Raises:
    ValueError: for an unknown dataset or architecture.
  """
  info = (name if isinstance(name, registry.DatasetInfo)
          else get_dataset_info(name))
  arch = architectures.get(architecture)  # Validates even when unused below.
  if (info.source == registry.SOURCE_OFFLINE or
      info.tfds_name == "places365_small"):
    return info.image_size
  return arch.default_image_size


def prepare_dataset(name: str, data_dir: Optional[os.PathLike] = None,
                    manual_dir: Optional[os.PathLike] = None):
  """Downloads and prepares a TFDS dataset (a no-op if prepared).

  The Python equivalent of `tfds build`, for machines where the `tfds` command
  does not start (TFDS 4.9 imports apache-beam there).

  Args:
    name: a registry TFDS dataset or `tfds:NAME[/CONFIG]` (a label subset
      suffix is ignored).
    data_dir: TFDS data directory; None for TFDS's default.
    manual_dir: directory with manually downloaded files.

  Returns:
    The prepared `tfds.core.DatasetBuilder`.

  Raises:
    ValueError: for unknown, offline or folder datasets.
    DatasetNotPreparedError: if the data can be neither found nor downloaded.
  """
  info = get_dataset_info(name, data_dir=data_dir, manual_dir=manual_dir)
  if info.source != registry.SOURCE_TFDS:
    raise ValueError(f"{name!r} is not a TFDS dataset ({info.source}): it "
                     "needs no preparation.")
  return tfds_source.prepared_builder(info, data_dir=data_dir,
                                      manual_dir=manual_dir, download=True)
