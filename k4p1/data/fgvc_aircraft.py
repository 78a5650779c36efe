"""TFDS builder for FGVC-Aircraft 2013b (100 variants), which TFDS does not ship.

Reads the official archive `fgvc-aircraft-2013b.tar.gz` (2.75 GB), downloaded from
the VGG site or taken from the manual directory (the archive, or the folder it
extracts to). Layout used, inside `fgvc-aircraft-2013b/data/`:
  images/<7-digit id>.jpg
  variants.txt                               the 100 variant names, one a line
  images_variant_{train,val,test}.txt        "<id> <variant name>" per line
Splits: `train` (3,334), `validation` (3,333), `test` (3,333); the official
"trainval" split is `train+validation` (6,667). The 20-pixel copyright banner at
the bottom of every image is removed, as the dataset's README asks.

Build it with `tfds build fgvc_aircraft --imports=k4p1.data --data_dir=<dir>`
(add `--manual_dir=<dir with the archive>` offline).
"""

from __future__ import annotations

import pathlib

import numpy as np
import tensorflow_datasets as tfds

ARCHIVE_NAME = "fgvc-aircraft-2013b.tar.gz"
ARCHIVE_DIR = "fgvc-aircraft-2013b"
DOWNLOAD_URL = ("https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/"
                + ARCHIVE_NAME)
BANNER_HEIGHT = 20
# Our split name -> the official annotation file's split name.
SPLIT_FILES = {"train": "train", "validation": "val", "test": "test"}

# The 100 variants of `data/variants.txt`, in file order (label = index).
VARIANTS = (
    "707-320", "727-200", "737-200", "737-300", "737-400", "737-500", "737-600",
    "737-700", "737-800", "737-900", "747-100", "747-200", "747-300", "747-400",
    "757-200", "757-300", "767-200", "767-300", "767-400", "777-200", "777-300",
    "A300B4", "A310", "A318", "A319", "A320", "A321", "A330-200", "A330-300",
    "A340-200", "A340-300", "A340-500", "A340-600", "A380", "ATR-42", "ATR-72",
    "An-12", "BAE 146-200", "BAE 146-300", "BAE-125", "Beechcraft 1900",
    "Boeing 717", "C-130", "C-47", "CRJ-200", "CRJ-700", "CRJ-900", "Cessna 172",
    "Cessna 208", "Cessna 525", "Cessna 560", "Challenger 600", "DC-10", "DC-3",
    "DC-6", "DC-8", "DC-9-30", "DH-82", "DHC-1", "DHC-6", "DHC-8-100",
    "DHC-8-300", "DR-400", "Dornier 328", "E-170", "E-190", "E-195", "EMB-120",
    "ERJ 135", "ERJ 145", "Embraer Legacy 600", "Eurofighter Typhoon", "F-16A/B",
    "F/A-18", "Falcon 2000", "Falcon 900", "Fokker 100", "Fokker 50", "Fokker 70",
    "Global Express", "Gulfstream IV", "Gulfstream V", "Hawk T1", "Il-76",
    "L-1011", "MD-11", "MD-80", "MD-87", "MD-90", "Metroliner", "Model B200",
    "PA-28", "SR-20", "Saab 2000", "Saab 340", "Spitfire", "Tornado", "Tu-134",
    "Tu-154", "Yak-42",
)

_CITATION = """\
@techreport{maji13fine-grained,
  title = {Fine-Grained Visual Classification of Aircraft},
  author = {S. Maji and J. Kannala and E. Rahtu and M. Blaschko and A. Vedaldi},
  year = {2013},
  archivePrefix = {arXiv},
  eprint = {1306.5151},
  primaryClass = "cs-cv",
}"""


def manual_data_present(manual_dir: pathlib.Path) -> bool:
  """Whether `manual_dir` holds the archive or its extracted folder."""
  return ((manual_dir / ARCHIVE_NAME).is_file()
          or (manual_dir / ARCHIVE_DIR / "data" / "variants.txt").is_file())


def read_annotations(path: pathlib.Path) -> list[tuple[str, str]]:
  """Reads "<image id> <variant name>" lines (names may contain spaces)."""
  pairs = []
  for line in path.read_text().splitlines():
    if line.strip():
      image_id, variant = line.strip().split(" ", 1)
      pairs.append((image_id, variant))
  return pairs


class FgvcAircraft(tfds.core.GeneratorBasedBuilder):
  """FGVC-Aircraft 2013b, variant level (100 classes)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {
      "1.0.0": "100 variants; official train/val/test; banner removed.",
  }
  DOWNLOAD_URLS = (DOWNLOAD_URL,)
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
  Optional: without network access, put {ARCHIVE_NAME} (from
  {DOWNLOAD_URL}), or the {ARCHIVE_DIR}/ folder it extracts to, in manual_dir.
  Otherwise the archive is downloaded.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=("FGVC-Aircraft: 10,000 images of aircraft, 100 images for "
                     "each of 100 model variants (Maji et al., 2013)."),
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3),
                                         encoding_format="jpeg"),
            "label": tfds.features.ClassLabel(names=VARIANTS),
            "filename": tfds.features.Text(),
        }),
        supervised_keys=("image", "label"),
        homepage="https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/",
        citation=_CITATION,
    )

  def _data_root(self, dl_manager) -> pathlib.Path:
    """Finds `fgvc-aircraft-2013b/data`: manual dir first, else download."""
    try:
      manual_dir = pathlib.Path(dl_manager.manual_dir)
    except (AssertionError, ValueError):  # No or empty manual dir.
      manual_dir = None
    if manual_dir is not None and (manual_dir / ARCHIVE_DIR / "data").is_dir():
      extracted = manual_dir
    elif manual_dir is not None and (manual_dir / ARCHIVE_NAME).is_file():
      extracted = pathlib.Path(dl_manager.extract(manual_dir / ARCHIVE_NAME))
    else:
      extracted = pathlib.Path(dl_manager.download_and_extract(DOWNLOAD_URL))
    data_root = extracted / ARCHIVE_DIR / "data"
    variants_file = data_root / "variants.txt"
    if not variants_file.is_file():
      raise ValueError(f"{variants_file} not found: is {extracted} the "
                       f"extracted {ARCHIVE_NAME}?")
    variants = tuple(v.strip() for v in variants_file.read_text().splitlines()
                     if v.strip())
    if variants != VARIANTS:
      raise ValueError(f"{variants_file} lists {len(variants)} variants that differ "
                       f"from the 100 of FGVC-Aircraft 2013b.")
    return data_root

  def _split_generators(self, dl_manager):
    data_root = self._data_root(dl_manager)
    return {
        split: self._generate_examples(
            data_root, data_root / f"images_variant_{official}.txt")
        for split, official in SPLIT_FILES.items()
    }

  def _generate_examples(self, data_root: pathlib.Path,
                         annotations: pathlib.Path):
    pil_image = tfds.core.lazy_imports.PIL_Image
    for image_id, variant in read_annotations(annotations):
      filename = f"{image_id}.jpg"
      with pil_image.open(data_root / "images" / filename) as image:
        image = image.convert("RGB")
        width, height = image.size
        if height <= BANNER_HEIGHT:
          raise ValueError(f"{filename} is {height} px high: no room for the "
                           f"{BANNER_HEIGHT}-px banner it should carry.")
        pixels = np.asarray(image.crop((0, 0, width, height - BANNER_HEIGHT)))
      yield image_id, {"image": pixels, "label": variant, "filename": filename}
