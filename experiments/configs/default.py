"""The paper's recipe as it stands in `k4p1.train.RunConfig` (no overrides).

RMSProp (rho 0.9, momentum 0.9, epsilon 1.0), learning rate 0.045 per 96
images, x0.98 every 2.5 epochs, label smoothing 0.1, weight decay 4e-5,
MobileNetV2 1.0 at 224 px with ImageNet weights, S/B + logits patch.
"""


def get_config() -> dict:
  return {}
