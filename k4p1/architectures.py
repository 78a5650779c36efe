"""The backbone architectures k4p1 knows, and every per-architecture fact.

This is the one table the rest of k4p1 reads: the backbone builder
(`k4p1.models`), the input pipeline (`k4p1.data`: default sizes,
`preprocess_input`) and the TF checkpoint loaders (slim variable scopes).
It imports nothing from k4p1 but the core (`k4p1.core`: the architecture
names, patch kinds and their descriptions), so any layer may import it.

```python
from k4p1 import architectures
arch = architectures.get("inception_v3")
arch.default_image_size          # 299
arch.targets("scale_bias")       # "BatchNormalization betas only (...)"
```
"""

import dataclasses
import types
from typing import Any, Callable, Optional

import keras

from k4p1.core import choices
from k4p1.core import kinds as kinds_lib

# Sources of TensorFlow checkpoints a backbone can load (`"<source>:<path>"`),
# in the order they are listed to users.
CHECKPOINT_SOURCES = choices.CHECKPOINT_SOURCES
# Patch kinds (k4p1.core.kinds), whatever the architecture.
PATCH_KINDS = kinds_lib.KINDS


@dataclasses.dataclass(frozen=True)
class Architecture:
  """How to build one `keras.applications` family, and what its patches target.

  Attributes:
    name: k4p1's name for the architecture.
    constructor: the `keras.applications` function.
    default_image_size: the input size the paper (or Keras) uses.
    min_image_size: the smallest input size Keras accepts.
    supports_alpha: whether the width multiplier `alpha` applies.
    bn_has_scale: whether its BatchNormalization layers learn gammas; without
      them `scale_bias` is beta-only and `scale` matches nothing.
    has_depthwise: whether it has DepthwiseConv2D layers (`depthwise` kind).
    preprocess: the `keras.applications` module whose `preprocess_input` maps
      float 0..255 RGB images to what the network expects.
    constructor_defaults: (keyword, value) pairs passed to `constructor`
      unless the caller sets them.
    slim_scope: top-level variable scope of the TF-slim network, which
      prefixes every variable name in its checkpoints; None without one.
    checkpoint_sources: the `CHECKPOINT_SOURCES` that can fill it.
  """
  name: str
  constructor: Callable[..., keras.Model]
  default_image_size: int
  min_image_size: int
  supports_alpha: bool
  bn_has_scale: bool
  has_depthwise: bool
  preprocess: types.ModuleType
  constructor_defaults: tuple[tuple[str, Any], ...] = ()
  slim_scope: Optional[str] = None
  checkpoint_sources: tuple[str, ...] = ()

  def preprocess_input(self, images):
    """Applies the architecture's `keras.applications` `preprocess_input`."""
    return self.preprocess.preprocess_input(images)

  def matches(self, kind: str) -> bool:
    """Whether patch kind `kind` finds layers to train in this architecture."""
    kinds_lib.check_kind(kind)
    if kind == "scale":
      return self.bn_has_scale
    if kind == "depthwise":
      return self.has_depthwise
    return True

  def targets(self, kind: str) -> Optional[str]:
    """One line saying what `kind` trains here; None if it matches nothing.

    Raises:
      ValueError: `kind` is not a patch kind.
    """
    if not self.matches(kind):
      return None
    if kind == "scale_bias" and not self.bn_has_scale:
      # InceptionV3-style BN (scale=False); add_missing_scales rebuilds it.
      return ("BatchNormalization betas only (its BN layers have no gammas; "
              "add_missing_scales=True adds them)")
    return kinds_lib.DESCRIPTIONS[kind]


_APPS = keras.applications
# preprocess: mobilenet_v2 and inception_v3 scale to [-1, 1]; resnet50 is
# "caffe" mode (RGB -> BGR minus the ImageNet channel means); efficientnet and
# mobilenet_v3 are the identity, those models rescale 0..255 themselves.
_ARCHITECTURES = (
    Architecture("mobilenet_v2", _APPS.MobileNetV2, default_image_size=224,
                 min_image_size=32, supports_alpha=True, bn_has_scale=True,
                 has_depthwise=True, preprocess=_APPS.mobilenet_v2,
                 slim_scope="MobilenetV2", checkpoint_sources=CHECKPOINT_SOURCES),
    Architecture("inception_v3", _APPS.InceptionV3, default_image_size=299,
                 min_image_size=75, supports_alpha=False, bn_has_scale=False,
                 has_depthwise=False, preprocess=_APPS.inception_v3,
                 slim_scope="InceptionV3", checkpoint_sources=("slim",)),
    Architecture("resnet50", _APPS.ResNet50, default_image_size=224,
                 min_image_size=32, supports_alpha=False, bn_has_scale=True,
                 has_depthwise=False, preprocess=_APPS.resnet50),
    Architecture("efficientnet_b0", _APPS.EfficientNetB0, default_image_size=224,
                 min_image_size=32, supports_alpha=False, bn_has_scale=True,
                 has_depthwise=True, preprocess=_APPS.efficientnet),
    # Built-in preprocessing on (inputs in [0, 255]) and 'minimalistic' off,
    # as the published weights expect.
    Architecture("mobilenet_v3_large", _APPS.MobileNetV3Large,
                 default_image_size=224, min_image_size=32, supports_alpha=True,
                 bn_has_scale=True, has_depthwise=True,
                 preprocess=_APPS.mobilenet_v3,
                 constructor_defaults=(("include_preprocessing", True),)),
)

# Read-only: this table is the single source of truth of each architecture's
# facts; its names are `k4p1.core.choices.ARCHITECTURES`, in that order.
TABLE = types.MappingProxyType({a.name: a for a in _ARCHITECTURES})
NAMES = choices.ARCHITECTURES
if tuple(TABLE) != NAMES:
  raise ImportError(f"k4p1.architectures' table names {tuple(TABLE)}, but "
                    f"k4p1.core.choices.ARCHITECTURES is {NAMES}: add the "
                    "architecture to both, in the same order.")


def get(name: str) -> Architecture:
  """Returns the `Architecture` called `name`.

  Raises:
    ValueError: `name` is not a known architecture (the message lists them).
  """
  if not isinstance(name, str) or name not in TABLE:
    raise ValueError(f"Unknown architecture {name!r}; valid choices: "
                     f"{', '.join(NAMES)}.")
  return TABLE[name]
