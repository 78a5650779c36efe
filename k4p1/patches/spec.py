"""`PatchSpec`: which per-task parameters a model patch holds.

A spec is a set of kinds joined with `+`, e.g. `"scale_bias+depthwise+logits"`.
Each kind is data: the layer classes it targets and the variables of those
layers it trains (see `KIND_TARGETS`). One injection pass
(`k4p1.patches.apply_patch`) turns any spec into a task model.
"""

import dataclasses

import keras

from k4p1.core import kinds as kinds_lib

# Canonical order, used for printing specs and in tables (k4p1.core.kinds).
KINDS = kinds_lib.KINDS
BN_KINDS = kinds_lib.BN_KINDS
_BN = keras.layers.BatchNormalization
_DW = keras.layers.DepthwiseConv2D


@dataclasses.dataclass(frozen=True)
class KindTarget:
  """What a patch kind makes task-specific.

  Attributes:
    layer_classes: layers of these classes are rebuilt as per-task copies
      (empty: the kind adds a head, or for `full`, copies every layer).
    variables: the variables of those layers that train; `None` means all.
    description: one line for documentation and error messages
      (`k4p1.core.kinds.DESCRIPTIONS`).
  """
  layer_classes: tuple
  variables: tuple | None
  description: str


# The layer classes and variables of each kind; `stats` is a control, not a
# patch of the paper (it separates what S/B gains from statistics).
_LAYERS_AND_VARIABLES = {
    "logits": ((), None),
    "stats": ((_BN,), ()),
    "scale_bias": ((_BN,), ("gamma", "beta")),
    "scale": ((_BN,), ("gamma",)),
    "bias": ((_BN,), ("beta",)),
    "depthwise": ((_DW,), None),
    "taps": ((keras.layers.Conv2D, _DW), ("delta", "score")),
    "lora": ((keras.layers.Conv2D, keras.layers.Dense), ("lora_a", "lora_b")),
    "full": ((), None),
}
KIND_TARGETS = {
    kind: KindTarget(*_LAYERS_AND_VARIABLES[kind], kinds_lib.DESCRIPTIONS[kind])
    for kind in KINDS
}


@dataclasses.dataclass(frozen=True)
class PatchSpec:
  """An immutable, normalised set of patch kinds.

  Normalisation (`k4p1.core.kinds.normalize`): `scale+bias` becomes
  `scale_bias`; `scale` or `bias` beside `scale_bias` is absorbed, and so is
  `stats` beside another BN kind; `full` implies a new head (`logits`), since
  a fully fine-tuned model is a separate classifier.
  """
  kinds: frozenset

  @classmethod
  def parse(cls, text) -> "PatchSpec":
    """Parses `"kind+kind+..."` (or returns `text` if it is a `PatchSpec`).

    Raises:
      ValueError: the spec is empty, or names an unknown kind, or combines
        `full` with kinds it already contains, or `taps` with `depthwise`.
    """
    if isinstance(text, PatchSpec):
      return text
    return cls(kinds_lib.parse(text))

  def __str__(self) -> str:
    return kinds_lib.spec_string(self.kinds)

  def __contains__(self, kind: str) -> bool:
    return kind in self.kinds

  @property
  def has_logits(self) -> bool:
    return "logits" in self.kinds

  @property
  def is_full(self) -> bool:
    return "full" in self.kinds

  @property
  def is_taps(self) -> bool:
    return "taps" in self.kinds

  @property
  def has_lora(self) -> bool:
    return "lora" in self.kinds

  @property
  def patches_bn(self) -> bool:
    """Whether the task gets its own BatchNormalization layers."""
    return bool(self.kinds & BN_KINDS) or self.is_full

  @property
  def bn_variables(self) -> frozenset:
    """The BatchNormalization variables this spec trains."""
    if self.is_full:
      return frozenset({"gamma", "beta"})
    names = set()
    for kind in self.kinds & BN_KINDS:
      names.update(KIND_TARGETS[kind].variables)
    return frozenset(names)
