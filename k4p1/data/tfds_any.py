"""`tfds:NAME[/CONFIG][:labels]` datasets: any TFDS image classification dataset.

```python
info = tfds_info("tfds:beans")                  # prepared in TFDS's data_dir
info = tfds_info("tfds:eurosat/rgb:0-4", data_dir="~/tfds")
info = tfds_info("tfds:smallnorb", label_key="label_category")
```
Classes, splits and sizes come from the builder's metadata, so the data must
be prepared (or preparable now: `tfds_source.prepared_builder`, the same fast
"not prepared" failure as the registry datasets). The image is the builder's
single `Image` feature and the label its single `ClassLabel` feature, or the
pair its `supervised_keys` names, or the keys given. Training uses split
"train"; evaluation "test", or "validation" when there is no test split.
Under `tfds.testing.mock_data` nothing is prepared: splits are "train" and
"test" and their sizes what the mock yields.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from typing import Optional

import tensorflow as tf
import tensorflow_datasets as tfds

from k4p1.data import registry
from k4p1.data import tfds_source

TRAIN_SPLIT = "train"
EVAL_SPLITS = ("test", "validation")  # The first the builder has.


def _parse(name: str) -> tuple[str, str]:
  """"tfds:NAME[/CONFIG][:labels]" -> ("NAME[/CONFIG]", labels or "")."""
  tfds_name, _, subset_spec = name[len(registry.TFDS_PREFIX):].partition(":")
  if not tfds_name or tfds_name.count("/") > 1 or not all(tfds_name.split("/")):
    raise ValueError(f"Bad TFDS dataset {name!r}: expected "
                     f"'{registry.TFDS_PREFIX}<name>[/<config>][:<labels>]', "
                     "e.g. 'tfds:beans' or 'tfds:eurosat/rgb:0-4'.")
  return tfds_name, subset_spec


def _builder_class(base: str):
  try:
    return tfds.builder_cls(base)
  except tfds.core.registered.DatasetNotFoundError:
    names = dict.fromkeys(tfds.list_builders(with_community_datasets=False))
    close = difflib.get_close_matches(base, list(names), n=5)
    raise ValueError(
        f"Unknown TFDS dataset {base!r}; close names: {close or 'none'} (see "
        "https://www.tensorflow.org/datasets/catalog).") from None


def _code_builder(tfds_name: str, data_dir):
  """The builder from TFDS's code (features known; data not needed yet)."""
  base, _, config = tfds_name.partition("/")
  cls = _builder_class(base)
  configs = sorted(getattr(cls, "builder_configs", None) or {})
  if config and config not in configs:
    raise ValueError(f"Unknown config {config!r} of TFDS dataset {base!r}; "
                     f"valid choices: {configs or 'none (it has no configs)'}.")
  data_dir = os.fspath(data_dir) if data_dir is not None else None
  return tfds.builder(tfds_name, data_dir=data_dir, try_gcs=False)


def _pick_key(name, features, kind, given, supervised, what, flag) -> str:
  """The feature of type `kind`: `given`, the supervised one, or the only one."""
  candidates = [k for k, f in features.items() if isinstance(f, kind)]
  if given is not None:
    if given not in candidates:
      raise ValueError(f"{flag}={given!r} is not a {kind.__name__} feature of "
                       f"{name!r}; its {kind.__name__} features: {candidates}.")
    return given
  if isinstance(supervised, str) and supervised in candidates:
    return supervised
  if len(candidates) == 1:
    return candidates[0]
  if not candidates:
    raise ValueError(
        f"{name!r} has no {what} (a tfds.features.{kind.__name__} feature); "
        f"its features: {dict((k, type(f).__name__) for k, f in features.items())}"
        ". k4p1 trains image classifiers only.")
  raise ValueError(f"{name!r} has several {kind.__name__} features, "
                   f"{candidates}: choose one with {flag}.")


def _keys(name, builder, image_key, label_key) -> tuple[str, str]:
  features = builder.info.features
  supervised = builder.info.supervised_keys
  supervised = supervised if isinstance(supervised, tuple) else (None, None)
  label = _pick_key(name, features, tfds.features.ClassLabel, label_key,
                    supervised[1] if len(supervised) > 1 else None,
                    "class label", "label_key")
  image = _pick_key(name, features, tfds.features.Image, image_key,
                    supervised[0], "image", "image_key")
  feature = features[image]
  channels = feature.shape[-1] if feature.shape else None
  if feature.dtype != tf.uint8 or channels not in (1, 3, 4, None):
    raise ValueError(
        f"Image feature {image!r} of {name!r} is {feature.shape} "
        f"{feature.dtype.name}; k4p1 reads uint8 images with 1, 3 or 4 "
        "channels.")
  return image, label


def _splits(name: str, builder) -> tuple[str, str, Optional[int], Optional[int]]:
  """(train split, eval split, their sizes) from the metadata or the mock."""
  splits = builder.info.splits
  if not splits and tfds_source.tfds_mocked():
    def mock_size(split):
      size = int(builder.as_dataset(split=split).cardinality())
      return size if size >= 0 else None
    return (TRAIN_SPLIT, EVAL_SPLITS[0], mock_size(TRAIN_SPLIT),
            mock_size(EVAL_SPLITS[0]))
  eval_split = next((s for s in EVAL_SPLITS if s in splits), None)
  if TRAIN_SPLIT not in splits or eval_split is None:
    raise ValueError(
        f"{name!r} has splits {sorted(splits)}; k4p1 needs {TRAIN_SPLIT!r} and "
        f"{EVAL_SPLITS[0]!r} (or {EVAL_SPLITS[1]!r}).")
  return (TRAIN_SPLIT, eval_split, splits[TRAIN_SPLIT].num_examples,
          splits[eval_split].num_examples)


def tfds_info(name: str, *, data_dir: Optional[os.PathLike] = None,
              image_key: Optional[str] = None, label_key: Optional[str] = None,
              manual_dir: Optional[os.PathLike] = None,
              download: bool = True) -> registry.DatasetInfo:
  """Resolves `tfds:NAME[/CONFIG][:labels]` into a DatasetInfo.

  Args:
    name: the dataset, e.g. "tfds:beans", "tfds:eurosat/rgb:0-4".
    data_dir: TFDS data directory; None for TFDS's default.
    image_key: the image feature (default: found, see the module docstring).
    label_key: the ClassLabel feature (default: found).
    manual_dir, download: as `tfds_source.prepared_builder`.

  Returns:
    The DatasetInfo (class names, splits and sizes; a label subset's sizes
    are unknown, None).

  Raises:
    ValueError: an unknown name or config (with close names), no or several
      image or ClassLabel features, splits k4p1 cannot use, a bad label subset.
    DatasetNotPreparedError: the data is not prepared and cannot be now.
  """
  tfds_name, subset_spec = _parse(name)
  builder = _code_builder(tfds_name, data_dir)
  image, label = _keys(name, builder, image_key, label_key)
  classes = builder.info.features[label]
  if subset_spec:  # Checked before anything is downloaded.
    registry.parse_label_subset(subset_spec, classes.num_classes)
  known = registry.DATASETS.get(tfds_name)  # Manual files, notes, imports.
  info = registry.DatasetInfo(
      name=registry.TFDS_PREFIX + tfds_name, tfds_name=tfds_name,
      train_split=TRAIN_SPLIT, eval_split=EVAL_SPLITS[0],
      num_classes=classes.num_classes, num_train_examples=None,
      num_eval_examples=None,
      image_size=registry.ARCHITECTURE_IMAGE_SIZE["mobilenet_v2"],
      manual_download=bool(builder.MANUAL_DOWNLOAD_INSTRUCTIONS or
                           (known and known.manual_download)),
      notes=known.notes if known else f"TFDS dataset {tfds_name}.",
      source=registry.SOURCE_TFDS, image_key=image, label_key=label,
      manual_files=known.manual_files if known else (),
      prepare_imports=known.prepare_imports if known else None,
      base_num_classes=classes.num_classes,
      class_names=tuple(classes.names) if classes.names else None)
  builder = tfds_source.prepared_builder(info, data_dir=data_dir,
                                         manual_dir=manual_dir, download=download)
  train_split, eval_split, num_train, num_eval = _splits(name, builder)
  info = dataclasses.replace(info, train_split=train_split, eval_split=eval_split,
                             num_train_examples=num_train,
                             num_eval_examples=num_eval,
                             base_num_train_examples=num_train)
  if not subset_spec:
    return info
  return registry.subset_info(info, name, subset_spec)
