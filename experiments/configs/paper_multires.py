"""Multi-resolution (paper claim 5): one model, one patch per input size.

ImageNet MobileNetV2 1.0 run on ImageNet at 224, 192, 160, 128 and 96 px with
a per-resolution S/B (or S/B+DW) patch and one classifier head shared by every
resolution. The paper's resolutions are not known here; these are the
published MobileNetV2 checkpoint sizes (our choice, see BUILD_NOTES.md).
"""

RESOLUTIONS = (224, 192, 160, 128, 96)
PATCHES = ("scale_bias", "scale_bias+depthwise")


def get_config() -> dict:
  return {"model": "mobilenet_v2", "weights": "imagenet", "alpha": 1.0,
          "dataset": "imagenet2012", "resolutions": RESOLUTIONS}


def get_rows() -> list:
  return [{"patch": spec} for spec in PATCHES]
