"""Paper transfer table, MobileNetV2 rows: ImageNet MobileNetV2 1.0 -> 6 datasets.

CIFAR-10, CIFAR-100, Stanford Cars, FGVC Aircraft, Oxford Flowers-102 at
224 px and Places365 at 256 px, each with the patches logits,
scale_bias+logits, depthwise+logits, scale_bias+depthwise+logits and full
fine-tuning (30 rows), all with the paper's recipe (RMSProp, learning rate
0.045, x0.98 every 2.5 epochs; `k4p1.train.RunConfig` defaults).

  python -m experiments.launch --config=paper_transfer_mobilenet_v2 \
      --results_dir=runs/transfer_mobilenet_v2 --data_dir=...
"""

from experiments.configs import _paper


def get_config() -> dict:
  return {"model": "mobilenet_v2", "weights": "imagenet", "alpha": 1.0}


def get_rows() -> list:
  return _paper.transfer_rows("mobilenet_v2", _paper.TRANSFER_DATASETS,
                              _paper.MOBILENET_PATCHES)
