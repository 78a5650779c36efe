"""Paper transfer table, InceptionV3 rows: ImageNet InceptionV3 -> 6 datasets.

The same datasets as `paper_transfer_mobilenet_v2` at 299 px (Places365 at
256 px) with the patches logits, scale_bias+logits and full fine-tuning (18
rows). InceptionV3 has no depthwise convolutions, so the depthwise rows of
the table are n/a. Its BN layers have no scales (Keras and TF-slim use
scale=False): the S/B patch is beta-only, which every row records as
`add_missing_scales=False` (TinyTL quotes the paper's S/B numbers for this
model: Flowers 90.4, Cars 81.0, Aircraft 70.7).
"""

from experiments.configs import _paper


def get_config() -> dict:
  return {"model": "inception_v3", "weights": "imagenet", "alpha": 1.0}


def get_rows() -> list:
  return _paper.transfer_rows("inception_v3", _paper.TRANSFER_DATASETS,
                              _paper.INCEPTION_PATCHES, add_missing_scales=False)
