r"""SSD -> ImageNet (paper claim 1): a detector's feature extractor as a classifier.

The MobileNetV2 feature extractor of an SSD detector (TF Object Detection
API checkpoint) with a new S/B patch and 1000-way logits, trained on ImageNet
at 224 px; baselines: logits only and full fine-tuning (and DW patches).

  python -m experiments.run --config=ssd_to_imagenet \
      --weights=ssd_tf1:/ckpts/ssd_mobilenet_v2_coco/model.ckpt --workdir=...
  python -m experiments.launch --config=ssd_to_imagenet --results_dir=runs/ssd \
      --weights=ssd_tf1:/ckpts/ssd_mobilenet_v2_coco/model.ckpt --data_dir=...

`--weights` is required (ssd_tf1:<prefix> or ssd_tf2:<dir>); without it the
run stops at validation. `make_tables` puts these runs in their own table.
"""

from experiments import configs

REQUIRED_FLAGS = ("weights",)
PATCHES = ("logits", "scale_bias+logits", "depthwise+logits",
           "scale_bias+depthwise+logits", "full")


def get_config() -> dict:
  return {"model": "mobilenet_v2", "alpha": 1.0, "image_size": 224,
          "dataset": "imagenet2012", "patch": "scale_bias+logits",
          "weights": configs.required("weights", "ssd_tf1:<checkpoint prefix>")}


def get_rows() -> list:
  return [{"patch": spec} for spec in PATCHES]
