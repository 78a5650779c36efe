"""`folder:DIR` datasets: your own images, one subfolder per class.

```
DIR/<class>/<image>              a seeded, stratified holdout split, or
DIR/train/<class>/<image>        the user's own split (the same classes
DIR/test/<class>/<image>         in both)
```
Classes are the subfolder names, sorted (label i is the i-th name); images
are JPEG, PNG, BMP or GIF files (any depth below the class folder), grey,
RGB or RGBA, and always decode to 3-channel RGB uint8 (a GIF's first frame).
Hidden files and folders (".DS_Store", ".git") and files directly in DIR
(a README) are skipped.

Resolving (`folder_info`) lists every file and reads the first bytes of
each: a file whose extension or content is not one of the four formats fails
there, named, before anything is built. Images are decoded lazily in tf.data
(image_files.py); a file that still cannot be decoded (a corrupt body behind
a valid header) stops the pipeline with an error naming it. DIR may be a URL
(`gs://bucket/photos`: listed and read through `tf.io.gfile`).
"""

from __future__ import annotations

from concurrent import futures
import os
from typing import Optional

import numpy as np

from k4p1 import paths
from k4p1.data import offline
from k4p1.data import registry
from k4p1.data import validation

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
SPLIT_FOLDERS = ("train", "test")
DEFAULT_EVAL_FRACTION = offline.EVAL_FRACTION
# Bad files named in one error message (the count says how many there are).
MAX_NAMED_FILES = 10
# Threads reading file headers at resolve time (I/O bound: network disks).
_HEADER_THREADS = 16


def _image_format(header: bytes) -> Optional[str]:
  """The format `header` (a file's first bytes) starts, or None."""
  if header.startswith(b"\xff\xd8\xff"):
    return "jpeg"
  if header.startswith(b"\x89PNG\r\n\x1a\n"):
    return "png"
  if header[:6] in (b"GIF87a", b"GIF89a"):
    return "gif"
  if header.startswith(b"BM") and len(header) >= 30:
    return "bmp"
  return None


def _file_problem(path: str) -> Optional[str]:
  """Why `path` is not a readable image file, or None if it looks like one."""
  extension = os.path.splitext(path)[1].lower()
  if extension not in IMAGE_EXTENSIONS:
    return (f"not an image file (extension {extension or 'none'!r}; "
            f"images are {', '.join(IMAGE_EXTENSIONS)})")
  try:
    header = paths.read_bytes(path, 32)
  except OSError as e:
    return f"unreadable ({e.strerror or e})"
  if not header:
    return "empty file"
  kind = _image_format(header)
  if kind is None:
    return f"not a JPEG, PNG, BMP or GIF image (it starts with {header[:8]!r})"
  # TensorFlow's BMP decoder reads 8, 24 and 32 bits per pixel only.
  if kind == "bmp" and int.from_bytes(header[28:30], "little") not in (8, 24, 32):
    return (f"a {int.from_bytes(header[28:30], 'little')}-bit BMP (TensorFlow "
            "reads 8, 24 and 32-bit BMPs)")
  return None


def _visible(names):
  return sorted(n for n in names if not n.startswith("."))


def _subfolders(path: str) -> list[str]:
  return [n for n in _visible(paths.listdir(path))
          if paths.isdir(os.path.join(path, n))]


def _class_files(class_dir: str) -> list[str]:
  """Every visible file below `class_dir`, in a fixed (sorted) order."""
  files = []
  for parent, dirs, names in paths.walk(class_dir):
    dirs[:] = _visible(dirs)
    files.extend(os.path.join(parent, n) for n in _visible(names))
  return files


def _scan_classes(root: str, classes: list[str], what: str) -> dict:
  """{class: [image paths]} of `root`; raises on bad files or empty classes."""
  files = {c: _class_files(os.path.join(root, c)) for c in classes}
  paths = [path for c in classes for path in files[c]]
  with futures.ThreadPoolExecutor(_HEADER_THREADS) as pool:
    problems = [(path, problem) for path, problem in
                zip(paths, pool.map(_file_problem, paths)) if problem]
  if problems:
    named = "\n".join(f"  {path}: {problem}" for path, problem in
                      problems[:MAX_NAMED_FILES])
    more = len(problems) - MAX_NAMED_FILES
    raise ValueError(
        f"Folder dataset {what} has {len(problems)} file(s) that are not "
        f"readable images:\n{named}" + (f"\n  ... and {more} more" if more > 0
                                       else "") +
        "\nRemove or convert them (hidden files, starting with '.', are "
        "skipped).")
  empty = [c for c in classes if not files[c]]
  if empty:
    raise ValueError(f"Folder dataset {what}: class folder(s) "
                     f"{[os.path.join(root, c) for c in empty]} hold no image "
                     f"files ({', '.join(IMAGE_EXTENSIONS)}); every class "
                     "needs images.")
  return files


def _check_classes(root: str, classes: list[str], what: str) -> None:
  if not classes:
    raise ValueError(
        f"Folder dataset {what} has no class subfolders: put the images of "
        f"each class in its own folder, {root}/<class>/<image>, or use "
        f"{root}/train/<class>/ and {root}/test/<class>/.")
  if len(classes) == 1:
    raise ValueError(f"Folder dataset {what} has a single class, "
                     f"{classes[0]!r}: a classifier needs at least 2 class "
                     "folders.")


def _listing(root: str) -> tuple[list[str], dict]:
  """(sorted class names, {folder split ("", "train", "test"): {class: paths}})."""
  top = _subfolders(root)
  split_folders = [s for s in SPLIT_FOLDERS if s in top]
  if not split_folders:
    _check_classes(root, top, repr(root))
    return top, {"": _scan_classes(root, top, repr(root))}
  if len(split_folders) == 1 or len(top) > 2:
    others = [n for n in top if n not in SPLIT_FOLDERS]
    raise ValueError(
        f"Folder dataset {root!r} has {'/, '.join(split_folders)}/ "
        + (f"and also {others}" if len(split_folders) == 2 else
           f"but no {[s for s in SPLIT_FOLDERS if s not in top][0]}/ folder")
        + ": a split layout holds exactly train/<class>/ and test/<class>/; "
        "without train/ and test/, every subfolder is a class.")
  listing, classes = {}, {}
  for split in SPLIT_FOLDERS:
    path = os.path.join(root, split)
    classes[split] = _subfolders(path)
    _check_classes(path, classes[split], repr(path))
  if classes["train"] != classes["test"]:
    only_train = sorted(set(classes["train"]) - set(classes["test"]))
    only_test = sorted(set(classes["test"]) - set(classes["train"]))
    raise ValueError(
        f"Folder dataset {root!r}: train/ and test/ must hold the same class "
        f"folders; only in train/: {only_train}, only in test/: {only_test}.")
  for split in SPLIT_FOLDERS:
    path = os.path.join(root, split)
    listing[split] = _scan_classes(path, classes[split], repr(path))
  return classes["train"], listing


def _resolve_root(directory: str) -> str:
  if not directory:
    raise ValueError(f"Empty folder dataset name {registry.FOLDER_PREFIX!r}: "
                     f"use '{registry.FOLDER_PREFIX}<directory>'.")
  root = paths.absolute(directory if paths.is_url(directory)
                        else os.path.expanduser(directory))
  if paths.isdir(root):
    return root
  hint = ""
  head, _, tail = root.rpartition(":")
  if head and paths.isdir(head):
    hint = (f" (folder datasets take no label subset such as ':{tail}': "
            "put only the classes you want in the folder)")
  what = "is not a directory" if paths.exists(root) else "does not exist"
  raise ValueError(f"Folder dataset directory {root!r} {what}{hint}.")


def check_eval_fraction(eval_fraction) -> float:
  """Returns `eval_fraction` as a float if it is in (0, 1), else raises."""
  if (isinstance(eval_fraction, bool) or
      not isinstance(eval_fraction, (int, float, np.floating)) or
      not 0.0 < eval_fraction < 1.0):
    raise ValueError(f"eval_fraction must be a number in (0, 1) (the fraction "
                     f"of each class held out for evaluation), got "
                     f"{eval_fraction!r}.")
  return float(eval_fraction)


def _holdout_counts(name: str, classes, per_class: list[int],
                    eval_fraction: float) -> tuple[tuple, tuple]:
  """Per-class (train, eval) counts of the holdout (the same for every seed)."""
  labels = np.repeat(np.arange(len(classes)), per_class)
  train_idx, eval_idx = offline.holdout_indices(labels, eval_fraction, seed=0)
  train = np.bincount(labels[train_idx], minlength=len(classes))
  evaluation = np.bincount(labels[eval_idx], minlength=len(classes))
  starved = [c for c, n in zip(classes, train) if n == 0]
  if starved:
    raise ValueError(
        f"Folder dataset {name!r}: eval_fraction {eval_fraction} holds out "
        f"every image of class(es) {starved}, leaving none to train on; add "
        "images or lower eval_fraction.")
  if not evaluation.sum():
    raise ValueError(
        f"Folder dataset {name!r}: eval_fraction {eval_fraction} holds out no "
        f"image ({sum(per_class)} images in {len(classes)} classes); add "
        "images or raise eval_fraction.")
  return tuple(int(n) for n in train), tuple(int(n) for n in evaluation)


def folder_info(directory: str,
                eval_fraction: Optional[float] = None) -> registry.DatasetInfo:
  """Resolves `folder:<directory>` into a DatasetInfo (see the module docstring).

  Args:
    directory: the dataset's root folder (`~` expanded; a colon is allowed).
    eval_fraction: without train/ and test/ folders, the fraction of each
      class held out for evaluation, in (0, 1); None: 0.2. Ignored (info's
      `eval_fraction` None) when DIR has its own split.

  Returns:
    A DatasetInfo named `folder:<absolute directory>`, with class names,
    per-class counts of "train" and "test" and the file list.

  Raises:
    ValueError: the directory is missing; it has no class folder or a
      single one; a class folder has no image; a file is not a readable
      image (named); train/ and test/ classes differ; a bad eval_fraction.
  """
  fraction = check_eval_fraction(
      DEFAULT_EVAL_FRACTION if eval_fraction is None else eval_fraction)
  root = _resolve_root(directory)
  name = registry.FOLDER_PREFIX + root
  classes, listing = _listing(root)
  if "" in listing:
    per_class = [len(listing[""][c]) for c in classes]
    train, evaluation = _holdout_counts(name, classes, per_class, fraction)
    notes = (f"Your images: {len(classes)} class folders; {fraction:g} of each "
             "class held out for test (seeded, stratified).")
  else:
    train = tuple(len(listing["train"][c]) for c in classes)
    evaluation = tuple(len(listing["test"][c]) for c in classes)
    fraction, notes = None, (f"Your images: {len(classes)} classes in "
                             "train/<class> and test/<class> folders.")
  files = tuple((path, label, split) for split, by_class in listing.items()
                for label, c in enumerate(classes) for path in by_class[c])
  return registry.DatasetInfo(
      name=name, tfds_name=None, train_split="train", eval_split="test",
      num_classes=len(classes), num_train_examples=sum(train),
      num_eval_examples=sum(evaluation),
      image_size=registry.ARCHITECTURE_IMAGE_SIZE["mobilenet_v2"],
      manual_download=False, notes=notes, source=registry.SOURCE_FOLDER,
      base_num_classes=len(classes), train_examples_per_class=train,
      eval_examples_per_class=evaluation, class_names=tuple(classes),
      base_num_train_examples=sum(train), eval_fraction=fraction, files=files)


def split_files(info: registry.DatasetInfo, split: str,
                split_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """(paths, int32 labels) of one split of a folder dataset.

  Args:
    info: a folder dataset's DatasetInfo (`folder_info`).
    split: "train" or "test", or "validation" when `info` has one
      (validation.py: then "train" excludes it).
    split_seed: seed of the holdout (same rule as the offline datasets:
      a permutation per class seeded with (seed, class)).

  Raises:
    ValueError: an unknown split or a DatasetInfo without files.
  """
  source = validation.source_split(info, split)
  if source not in SPLIT_FOLDERS:
    raise ValueError(f"Unknown split {split!r} of {info.name!r}; valid "
                     f"choices: {SPLIT_FOLDERS}.")
  if not info.files:
    raise ValueError(f"{info.name!r} carries no file list: resolve it with "
                     "k4p1.data.get_dataset_info.")
  paths = np.array([f[0] for f in info.files])
  labels = np.array([f[1] for f in info.files], dtype=np.int32)
  folders = np.array([f[2] for f in info.files])
  if info.eval_fraction is None:
    keep = np.flatnonzero(folders == source)
  else:
    train_idx, eval_idx = offline.holdout_indices(labels, info.eval_fraction,
                                                  split_seed)
    keep = train_idx if source == "train" else eval_idx
  carved = validation.carve(info, split, labels[keep], split_seed)
  if carved is not None:
    keep = keep[carved]
  return paths[keep], labels[keep]
