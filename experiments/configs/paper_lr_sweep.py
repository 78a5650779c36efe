"""Appendix B.2 (Figure 9): learning-rate sweep for logits, S/B+logits and full.

The paper reports that small patches gain accuracy as the learning rate
grows, the opposite of full fine-tuning. Its grid and datasets are not known
here: this config sweeps our half-decade grid around the paper's 0.045
(0.0045, 0.0142, 0.045, 0.142, 0.45) with ImageNet MobileNetV2 1.0 at 224 px
on CIFAR-100 and Oxford Flowers-102 (a large and a small dataset), 30 rows.
`make_tables` draws one sweep plot per dataset.
"""

from experiments.configs import _paper

DATASETS = ("cifar100", "oxford_flowers102")


def get_config() -> dict:
  return {"model": "mobilenet_v2", "weights": "imagenet", "alpha": 1.0}


def get_rows() -> list:
  return _paper.transfer_rows("mobilenet_v2", DATASETS, _paper.LR_SWEEP_PATCHES,
                              learning_rates=_paper.LR_SWEEP)
