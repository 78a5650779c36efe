"""Registry of the named datasets k4p1 trains and evaluates on, and `DatasetInfo`.

TFDS mock data carries no split sizes, and the paper's setup fixes image sizes per
dataset and architecture, so those facts live here. Names may carry a label subset,
`"<dataset>:<labels>"`, e.g. `"mnist5k:0-4"` or `"cifar10:0,2,4"`: only those labels
are kept and they are renumbered 0..n-1 in the order given.

`lookup` resolves registry names only; `k4p1.data.get_dataset_info` (catalog.py)
also resolves `folder:DIR` and `tfds:NAME` datasets into the same `DatasetInfo`.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from k4p1 import architectures
from k4p1.core import names

# Default input size per architecture, from `k4p1.architectures` (kept for
# code that imports it from here).
ARCHITECTURE_IMAGE_SIZE = {
    name: a.default_image_size for name, a in architectures.TABLE.items()
}

SOURCE_TFDS = "tfds"
SOURCE_OFFLINE = "offline"
SOURCE_FOLDER = "folder"
# Name prefixes of datasets resolved outside the registry (catalog.py; the
# task-name rule in k4p1.core.names reads them too).
FOLDER_PREFIX = names.FOLDER_PREFIX
TFDS_PREFIX = names.TFDS_PREFIX


@dataclasses.dataclass(frozen=True)
class Augmentation:
  """Training augmentation and eval crop of one dataset.

  Attributes:
    area_range: range of the random crop's area, as a fraction of the image.
    aspect_ratio_range: range of the random crop's width / height.
    flip: whether training images are flipped left-right at random.
    eval_crop_fraction: fraction of each side kept by the eval central crop.
  """
  area_range: tuple[float, float] = (0.08, 1.0)
  aspect_ratio_range: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
  flip: bool = True
  eval_crop_fraction: float = 0.875


# Inception-style augmentation (TF-slim MobileNetV2 recipe).
INCEPTION_AUGMENTATION = Augmentation()
# Digits fill a tightly framed square: a mirrored digit is not a digit and an 8%
# crop keeps a stroke, so the offline digit datasets use milder settings.
DIGITS_AUGMENTATION = Augmentation(area_range=(0.5, 1.0), flip=False,
                                   eval_crop_fraction=1.0)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What k4p1 needs to know about one dataset (or a label subset of one).

  Attributes:
    name: the dataset's name, including a label subset suffix if any
      (`"cifar10:0-4"`, `"folder:/abs/dir"`, `"tfds:eurosat/rgb:0-4"`).
    tfds_name: TFDS builder name (with `/config`); None for offline and
      folder datasets.
    train_split: split to train on (TFDS split syntax for TFDS datasets).
    eval_split: split to evaluate on.
    num_classes: number of classes (of the subset, if any).
    num_train_examples: examples in `train_split`; None when not known (a label
      subset of a TFDS dataset whose per-class counts are not registered).
    num_eval_examples: examples in `eval_split`; None when not known.
    image_size: default input size (for TFDS and folder datasets,
      MobileNetV2's; see `default_image_size` for other architectures).
    manual_download: whether the data must be downloaded by hand (TFDS
      `--manual_dir`) because no automatic download exists.
    notes: quirks a user should know about.
    source: `"tfds"`, `"offline"` or `"folder"`.
    image_key: feature holding the image in TFDS examples.
    label_key: feature holding the label in TFDS examples.
    manual_files: files expected in the manual directory.
    prepare_imports: module to pass to `tfds build --imports` (builders that
      live outside TFDS).
    base_num_classes: number of classes of the full dataset.
    label_subset: original labels kept, in output order; None for all labels.
    train_examples_per_class: per-class counts of `train_split` (of the kept
      classes, in output label order), when known exactly.
    eval_examples_per_class: same for `eval_split`.
    augmentation: training augmentation and eval crop.
    class_names: class names in output label order, when known (folder and
      `tfds:` datasets).
    base_num_train_examples: examples in `train_split` of the full dataset
      (sizes the epoch of a label subset whose own count is unknown).
    eval_fraction: folder datasets without train/ and test/ folders: the
      fraction of each class held out for `eval_split`; else None.
    validation_split: the split held out of the training split for
      validation (`validation_fraction`; k4p1.data.validation), None without
      one. With it, `train_split` and the train counts exclude it.
    validation_fraction: the fraction of the training split it holds.
    num_validation_examples: examples in `validation_split`, when known.
    validation_examples_per_class: same per class, when known exactly.
    files: folder datasets: `(path, label, folder)` per image file, `folder`
      being "train" or "test" for a train/ and test/ layout, "" otherwise
      (the holdout is drawn when the pipeline is built).
    skip_bad_images: folder datasets: drop files that fail to decode (a
      corrupt body behind a valid header) instead of stopping the pipeline
      (image_files.py); how the data is read, not what it is.
  """
  name: str
  tfds_name: Optional[str]
  train_split: str
  eval_split: str
  num_classes: int
  num_train_examples: Optional[int]
  num_eval_examples: Optional[int]
  image_size: int
  manual_download: bool
  notes: str
  source: str = SOURCE_TFDS
  image_key: str = "image"
  label_key: str = "label"
  manual_files: tuple[str, ...] = ()
  prepare_imports: Optional[str] = None
  base_num_classes: int = 0
  label_subset: Optional[tuple[int, ...]] = None
  train_examples_per_class: Optional[tuple[int, ...]] = None
  eval_examples_per_class: Optional[tuple[int, ...]] = None
  augmentation: Augmentation = INCEPTION_AUGMENTATION
  class_names: Optional[tuple[str, ...]] = None
  base_num_train_examples: Optional[int] = None
  eval_fraction: Optional[float] = None
  validation_split: Optional[str] = None
  validation_fraction: Optional[float] = None
  num_validation_examples: Optional[int] = None
  validation_examples_per_class: Optional[tuple[int, ...]] = None
  files: tuple = dataclasses.field(default=(), repr=False, compare=False)
  skip_bad_images: bool = dataclasses.field(default=False, compare=False)

  @property
  def base_name(self) -> str:
    """Name without the label subset ("cifar10:0-4" -> "cifar10").

    A folder dataset's name is its base name (a colon may be in the path);
    `tfds:NAME[/CONFIG]` keeps its prefix.
    """
    if self.source == SOURCE_FOLDER:
      return self.name
    if self.name.startswith(TFDS_PREFIX):
      return TFDS_PREFIX + self.name[len(TFDS_PREFIX):].split(":", 1)[0]
    return self.name.split(":", 1)[0]


def _tfds(name, train_split, eval_split, num_classes, num_train, num_eval, notes,
          image_size=224, manual_files=(), per_class=None, **kwargs):
  return DatasetInfo(
      name=name, tfds_name=kwargs.pop("tfds_name", name), train_split=train_split,
      eval_split=eval_split, num_classes=num_classes, num_train_examples=num_train,
      num_eval_examples=num_eval, image_size=image_size,
      manual_download=bool(manual_files), notes=notes, source=SOURCE_TFDS,
      manual_files=tuple(manual_files), base_num_classes=num_classes,
      base_num_train_examples=num_train,
      train_examples_per_class=per_class and (per_class[0],) * num_classes,
      eval_examples_per_class=per_class and (per_class[1],) * num_classes,
      **kwargs)


# Offline splits hold out 20% of every class for evaluation (see offline.py);
# the counts below are what that rule gives and tests check them against the data.
_MNIST5K_TRAIN = (400,) * 10
_MNIST5K_EVAL = (100,) * 10
_DIGITS_TRAIN = (142, 146, 142, 146, 145, 146, 145, 143, 139, 144)
_DIGITS_EVAL = (36, 36, 35, 37, 36, 36, 36, 36, 35, 36)

_MNIST5K = DatasetInfo(
    name="mnist5k", tfds_name=None, train_split="train", eval_split="test",
    num_classes=10, num_train_examples=sum(_MNIST5K_TRAIN),
    num_eval_examples=sum(_MNIST5K_EVAL), image_size=64,
    manual_download=False, source=SOURCE_OFFLINE, base_num_classes=10,
    base_num_train_examples=sum(_MNIST5K_TRAIN),
    notes="Offline: 5,000 MNIST digits (28x28 grey) shipped in "
          "k4p1/data/files/mnist_5k.csv.gz; 20% of each class held out "
          "for test, by a seeded permutation.",
    train_examples_per_class=_MNIST5K_TRAIN,
    eval_examples_per_class=_MNIST5K_EVAL,
    augmentation=DIGITS_AUGMENTATION)

_BASE_DATASETS = (
    _tfds("imagenet2012", "train", "validation", 1000, 1_281_167, 50_000,
          "Manual download: put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar "
          "in --manual_dir (image-net.org login needed).",
          manual_files=("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")),
    _tfds("cifar10", "train", "test", 10, 50_000, 10_000,
          "32x32 images, upsampled to the input size.", per_class=(5_000, 1_000)),
    _tfds("cifar100", "train", "test", 100, 50_000, 10_000,
          "32x32 images; fine labels ('label'), the 20 coarse labels are ignored.",
          per_class=(500, 100)),
    _tfds("cars196", "train", "test", 196, 8_144, 8_041,
          "The Stanford Cars site is gone: TFDS cannot download it. Put "
          "cars_train.tgz, cars_test.tgz, car_devkit.tgz and "
          "cars_test_annos_withlabels.mat (from a mirror; TFDS checks their "
          "checksums) in --manual_dir.",
          manual_files=("cars_train.tgz", "cars_test.tgz", "car_devkit.tgz",
                        "cars_test_annos_withlabels.mat")),
    _tfds("oxford_flowers102", "train+validation", "test", 102, 2_040, 6_149,
          "TFDS train and validation hold 10 images per class each; k4p1 trains "
          "on both and evaluates on the 6,149 test images.", per_class=None),
    _tfds("places365_small", "train", "validation", 365, 1_803_460, 36_500,
          "Stored at 256x256 (the paper's input size for Places365). Its "
          "supervised tuple is (image, label, filename), so k4p1 reads the "
          "feature dict; the test split is unlabelled (label -1): evaluate on "
          "validation.", image_size=256),
    _tfds("fgvc_aircraft", "train+validation", "test", 100, 6_667, 3_333,
          "Builder in k4p1.data.fgvc_aircraft (not in TFDS): 100 variants, "
          "official trainval (= train+validation) / test split, 20-pixel "
          "copyright banner removed. Downloads fgvc-aircraft-2013b.tar.gz "
          "from robots.ox.ac.uk or reads it from --manual_dir.",
          prepare_imports="k4p1.data"),
    _MNIST5K,
    # The same digits in colour: same labels, order, split and sizes.
    dataclasses.replace(
        _MNIST5K, name="mnistm5k",
        notes="Offline: mnist5k's 5,000 digits (same labels and split) "
              "blended with patches of colour photos as MNIST-M (28x28 RGB); "
              "the photos come from the scikit-image wheel, fetched once (or "
              "read from --data_dir), and the images are generated once and "
              "cached (k4p1/data/mnistm.py)."),
    DatasetInfo(
        name="digits", tfds_name=None, train_split="train", eval_split="test",
        num_classes=10, num_train_examples=sum(_DIGITS_TRAIN),
        num_eval_examples=sum(_DIGITS_EVAL), image_size=32,
        manual_download=False, source=SOURCE_OFFLINE, base_num_classes=10,
        base_num_train_examples=sum(_DIGITS_TRAIN),
        notes="Offline: scikit-learn's load_digits (1,797 8x8 digits, values "
              "0-16 rescaled to 0-255); 20% of each class held out for test.",
        train_examples_per_class=_DIGITS_TRAIN,
        eval_examples_per_class=_DIGITS_EVAL,
        augmentation=DIGITS_AUGMENTATION),
)

DATASETS: dict[str, DatasetInfo] = {info.name: info for info in _BASE_DATASETS}


def parse_label_subset(spec: str, num_classes: int) -> tuple[int, ...]:
  """Parses a label subset such as `"0-4"`, `"5-9"` or `"0,2,7-9"`.

  Args:
    spec: comma-separated labels and inclusive ranges.
    num_classes: number of classes of the full dataset.

  Returns:
    The labels in the order given.

  Raises:
    ValueError: on syntax errors, labels out of range or repeated labels.
  """
  labels = []
  for part in spec.split(","):
    part = part.strip()
    try:
      if "-" in part:
        low, high = (int(x) for x in part.split("-", 1))
        if low > high:
          raise ValueError
        labels.extend(range(low, high + 1))
      else:
        labels.append(int(part))
    except ValueError:
      raise ValueError(
          f"Bad label subset {spec!r}: expected labels and ranges such as "
          f"'0-4' or '0,2,7-9'.") from None
  bad = [label for label in labels if not 0 <= label < num_classes]
  if bad:
    raise ValueError(f"Label subset {spec!r} has labels {bad} outside "
                     f"0..{num_classes - 1}.")
  if len(set(labels)) != len(labels):
    raise ValueError(f"Label subset {spec!r} repeats a label.")
  return tuple(labels)


def subset_info(info: DatasetInfo, name: str, subset_spec: str) -> DatasetInfo:
  """`info` restricted to the labels of `subset_spec`, named `name`.

  Per-class counts (and class names) follow the subset when `info` has them;
  otherwise the subset's example counts are unknown (None).
  """
  subset = parse_label_subset(subset_spec, info.base_num_classes)

  def pick(per_class):
    return None if per_class is None else tuple(per_class[c] for c in subset)

  train_counts = pick(info.train_examples_per_class)
  eval_counts = pick(info.eval_examples_per_class)
  return dataclasses.replace(
      info, name=name, num_classes=len(subset), label_subset=subset,
      num_train_examples=train_counts and sum(train_counts),
      num_eval_examples=eval_counts and sum(eval_counts),
      train_examples_per_class=train_counts,
      eval_examples_per_class=eval_counts, class_names=pick(info.class_names))


def lookup(name: str) -> DatasetInfo:
  """Returns the registry entry for `name`, e.g. `"cifar10"` or `"mnist5k:0-4"`.

  Args:
    name: registry name, optionally followed by `:<label subset>`.

  Returns:
    The DatasetInfo; for a subset, classes and example counts are the subset's.

  Raises:
    ValueError: if the dataset is unknown or the label subset is malformed.
  """
  base_name, _, subset_spec = name.partition(":")
  if base_name not in DATASETS:
    raise ValueError(
        f"Unknown dataset {base_name!r}; valid choices: {sorted(DATASETS)} "
        "(optionally with ':<labels>', e.g. 'mnist5k:0-4'), "
        f"'{FOLDER_PREFIX}<directory>' (one folder of images per class) or "
        f"'{TFDS_PREFIX}<tfds name>[/<config>][:<labels>]' (any TFDS image "
        "classification dataset).")
  info = DATASETS[base_name]
  if not subset_spec:
    return info
  return subset_info(info, f"{base_name}:{subset_spec}", subset_spec)
