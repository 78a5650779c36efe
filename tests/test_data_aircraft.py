"""The FGVC-Aircraft TFDS builder, on a generated archive with the official layout."""

import io
import pathlib
import tarfile

import numpy as np
import pytest
from PIL import Image
import tensorflow_datasets as tfds

from k4p1 import data
from k4p1.data import fgvc_aircraft

# (image id, variant) per official split; names with spaces and slashes included.
SPLITS = {
    "train": [("0000001", "707-320"), ("0000002", "Yak-42"),
              ("0000003", "BAE 146-200"), ("0000004", "F-16A/B")],
    "val": [("0000005", "A380"), ("0000006", "Cessna 172"), ("0000007", "707-320")],
    "test": [("0000008", "F/A-18"), ("0000009", "Yak-42"), ("0000010", "DC-3")],
}
HEIGHT, WIDTH = 50, 40  # Image size in the archive, banner included.
CONTENT, BANNER = 60, 250  # Grey levels of the picture and of the banner.


def _jpeg(height, width):
  pixels = np.full((height, width, 3), CONTENT, np.uint8)
  pixels[-fgvc_aircraft.BANNER_HEIGHT:] = BANNER
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
  return buffer.getvalue()


def make_archive(directory: pathlib.Path, variants=fgvc_aircraft.VARIANTS):
  """Writes a small fgvc-aircraft-2013b.tar.gz with the official layout."""
  directory.mkdir(parents=True, exist_ok=True)
  root = f"{fgvc_aircraft.ARCHIVE_DIR}/data"
  path = directory / fgvc_aircraft.ARCHIVE_NAME

  def add(tar, name, content: bytes):
    member = tarfile.TarInfo(f"{root}/{name}")
    member.size = len(content)
    tar.addfile(member, io.BytesIO(content))

  with tarfile.open(path, "w:gz") as tar:
    add(tar, "variants.txt", "".join(f"{v}\n" for v in variants).encode())
    for split, examples in SPLITS.items():
      lines = "".join(f"{image_id} {variant}\n" for image_id, variant in examples)
      add(tar, f"images_variant_{split}.txt", lines.encode())
      for i, (image_id, _) in enumerate(examples):
        add(tar, f"images/{image_id}.jpg", _jpeg(HEIGHT + i, WIDTH))
  return path


def test_builder_reads_the_official_splits_and_drops_the_banner(tmp_path):
  make_archive(tmp_path / "manual")
  builder = tfds.builder("fgvc_aircraft", data_dir=str(tmp_path / "tfds"))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(tmp_path / "manual")))
  assert builder.info.features["label"].num_classes == 100
  for split, official in (("train", "train"), ("validation", "val"),
                          ("test", "test")):
    expected = SPLITS[official]
    assert builder.info.splits[split].num_examples == len(expected)
    examples = {ex["filename"].decode(): ex for ex in
                tfds.as_numpy(builder.as_dataset(split=split))}
    assert len(examples) == len(expected)
    for i, (image_id, variant) in enumerate(expected):
      example = examples[f"{image_id}.jpg"]
      assert 0 <= example["label"] < 100
      assert example["label"] == fgvc_aircraft.VARIANTS.index(variant)
      image = example["image"]
      assert image.shape == (HEIGHT + i - fgvc_aircraft.BANNER_HEIGHT, WIDTH, 3)
      assert abs(int(image[-1].mean()) - CONTENT) < 10  # Banner rows are gone.
  trainval = builder.as_dataset(split="train+validation")
  assert sum(1 for _ in trainval) == len(SPLITS["train"]) + len(SPLITS["val"])


def test_build_dataset_prepares_aircraft_from_the_manual_dir(tmp_path):
  make_archive(tmp_path / "manual")
  info = data.get_dataset_info("fgvc_aircraft")
  ds = data.build_dataset("fgvc_aircraft", info.eval_split, global_batch_size=2,
                          image_size=32, training=False,
                          data_dir=tmp_path / "tfds", manual_dir=tmp_path / "manual", architecture="mobilenet_v2")
  labels = np.concatenate([y.numpy() for _, y in ds])
  np.testing.assert_array_equal(
      np.sort(labels), sorted(fgvc_aircraft.VARIANTS.index(v) for _, v in SPLITS["test"]))
  train = data.build_dataset("fgvc_aircraft", info.train_split, global_batch_size=4,
                             image_size=32, training=True,
                             data_dir=tmp_path / "tfds", download=False, architecture="mobilenet_v2")
  images, labels = next(iter(train))  # Prepared now: no manual_dir needed.
  assert images.shape == (4, 32, 32, 3)
  assert labels.numpy().min() >= 0 and labels.numpy().max() < 100


def test_an_archive_with_other_variants_is_rejected(tmp_path):
  make_archive(tmp_path / "manual", variants=fgvc_aircraft.VARIANTS[:-1])
  builder = tfds.builder("fgvc_aircraft", data_dir=str(tmp_path / "tfds"))
  with pytest.raises(ValueError, match="variants"):
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(tmp_path / "manual")))


def test_an_extracted_archive_in_the_manual_dir_is_accepted(tmp_path):
  archive = make_archive(tmp_path / "download")
  manual_dir = tmp_path / "manual"
  with tarfile.open(archive) as tar:
    tar.extractall(manual_dir, filter="data")
  assert fgvc_aircraft.manual_data_present(manual_dir)
  assert not fgvc_aircraft.manual_data_present(tmp_path)
  builder = data.prepare_dataset("fgvc_aircraft", data_dir=tmp_path / "tfds",
                                 manual_dir=manual_dir)
  assert builder.info.splits["test"].num_examples == len(SPLITS["test"])
