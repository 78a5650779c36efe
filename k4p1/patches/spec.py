"""`PatchSpec`: which per-task parameters a model patch holds.

A spec is a set of kinds joined with `+`, e.g. `"scale_bias+depthwise+logits"`.
Each kind is data: the layer classes it targets and the variables of those
layers it trains (see `KIND_TARGETS`). One injection pass
(`k4p1.patches.apply_patch`) turns any spec into a task model.
"""

import dataclasses
import difflib

import keras

# Canonical order, used for printing specs and in tables.
KINDS = ("logits", "stats", "scale_bias", "scale", "bias", "depthwise", "taps",
         "full")
_BN = keras.layers.BatchNormalization
_DW = keras.layers.DepthwiseConv2D


@dataclasses.dataclass(frozen=True)
class KindTarget:
  """What a patch kind makes task-specific.

  Attributes:
    layer_classes: layers of these classes are rebuilt as per-task copies
      (empty: the kind adds a head, or for `full`, copies every layer).
    variables: the variables of those layers that train; `None` means all.
    description: one line for documentation and error messages.
  """
  layer_classes: tuple
  variables: tuple | None
  description: str


KIND_TARGETS = {
    "logits": KindTarget((), None, "a new Dense head per task on the pooled features"),
    # A control, not a patch of the paper: the task's own BN statistics with
    # no trained scale or bias (it separates what S/B gains from statistics).
    "stats": KindTarget((_BN,), (),
                        "BatchNormalization moving statistics only: the task's "
                        "own, re-estimated in training (gammas and betas are "
                        "not trained)"),
    "scale_bias": KindTarget((_BN,), ("gamma", "beta"),
                             "BatchNormalization gammas and betas (+ the task's own "
                             "moving statistics)"),
    "scale": KindTarget((_BN,), ("gamma",),
                        "BatchNormalization gammas (+ the task's own moving statistics)"),
    "bias": KindTarget((_BN,), ("beta",),
                       "BatchNormalization betas (+ the task's own moving statistics)"),
    "depthwise": KindTarget((_DW,), None, "DepthwiseConv2D kernels (and biases, if any)"),
    "taps": KindTarget((keras.layers.Conv2D, _DW), ("delta", "score"),
                       "every convolution (Conv2D and DepthwiseConv2D): a gated "
                       "per-task kernel residual, kept where its learned gate "
                       "opens (TAPS)"),
    "full": KindTarget((), None, "every layer: an independent fine-tuned copy with its own head"),
}
BN_KINDS = frozenset({"stats", "scale_bias", "scale", "bias"})


def _valid_choices() -> str:
  return f"valid kinds: {', '.join(KINDS)} (joined with '+')"


@dataclasses.dataclass(frozen=True)
class PatchSpec:
  """An immutable, normalised set of patch kinds.

  Normalisation: `scale+bias` becomes `scale_bias`; `scale` or `bias` beside
  `scale_bias` is absorbed; `full` implies a new head (`logits`), since a fully
  fine-tuned model is a separate classifier.
  """
  kinds: frozenset

  @classmethod
  def parse(cls, text) -> "PatchSpec":
    """Parses `"kind+kind+..."` (or returns `text` if it is a `PatchSpec`).

    Raises:
      ValueError: the spec is empty, or names an unknown kind, or combines
        `full` with kinds it already contains.
    """
    if isinstance(text, PatchSpec):
      return text
    if not isinstance(text, str) or not text.strip():
      raise ValueError(f"Empty patch spec {text!r}; {_valid_choices()}.")
    kinds = set()
    for raw in text.split("+"):
      kind = raw.strip()
      if kind not in KIND_TARGETS:
        close = difflib.get_close_matches(kind, KINDS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown patch kind {kind!r} in spec {text!r}; "
                         f"{_valid_choices()}.{hint}")
      kinds.add(kind)
    if "full" in kinds and kinds - {"full", "logits"}:
      raise ValueError(
          f"Patch spec {text!r} combines 'full' with "
          f"{sorted(kinds - {'full', 'logits'})}, which 'full' already trains; "
          f"use 'full' alone. {_valid_choices()}.")
    if {"taps", "depthwise"} <= kinds:
      raise ValueError(
          f"Patch spec {text!r} combines 'taps' with 'depthwise': 'taps' "
          "already gives every DepthwiseConv2D kernel a gated residual; use "
          f"one of them. {_valid_choices()}.")
    if {"scale", "bias"} <= kinds or "scale_bias" in kinds:
      kinds -= {"scale", "bias"}
      kinds.add("scale_bias")
    if "stats" in kinds and kinds & (BN_KINDS - {"stats"}):
      kinds.discard("stats")  # Every BN kind already owns its statistics.
    if "full" in kinds:
      kinds.add("logits")
    return cls(frozenset(kinds))

  def __str__(self) -> str:
    if "full" in self.kinds:
      return "full"
    return "+".join(k for k in KINDS if k in self.kinds)

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
