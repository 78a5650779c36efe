"""Patch kinds: their names, canonical order, descriptions and combination rules.

A patch spec is a set of kinds joined with `+` ("scale_bias+logits"). This
module owns every fact about kinds that is not a layer class: which kinds
exist (`KINDS`, in the order specs print), what each trains (`DESCRIPTIONS`),
which ones patch BatchNormalization layers (`BN_KINDS`), and how a set of
kinds is normalised (`normalize`) and printed (`spec_string`).
`k4p1.patches.PatchSpec` parses specs with `parse`; the report reads the
`patch` string of any results.json with `normalize` (unknown kinds kept).
"""

import difflib
from typing import Iterable

# What each kind makes task-specific, whatever the architecture: one line for
# documentation and error messages. In canonical order (`KINDS`).
DESCRIPTIONS = {
    "logits": "a new Dense head per task on the pooled features",
    # A control, not a patch of the paper: the task's own BN statistics with
    # no trained scale or bias (it separates what S/B gains from statistics).
    "stats": ("BatchNormalization moving statistics only: the task's own, "
              "re-estimated in training (gammas and betas are not trained)"),
    "scale_bias": ("BatchNormalization gammas and betas (+ the task's own "
                   "moving statistics)"),
    "scale": "BatchNormalization gammas (+ the task's own moving statistics)",
    "bias": "BatchNormalization betas (+ the task's own moving statistics)",
    "depthwise": "DepthwiseConv2D kernels (and biases, if any)",
    "taps": ("every convolution (Conv2D and DepthwiseConv2D): a gated per-task "
             "kernel residual, kept where its learned gate opens (TAPS)"),
    "lora": ("every Conv2D and Dense kernel: a rank-r residual (alpha/r) * A @ B "
             "(LoRA; not DepthwiseConv2D kernels, whose factors would be larger "
             "than the kernel; with taps, behind TAPS's gates)"),
    "full": "every layer: an independent fine-tuned copy with its own head",
}
# Canonical order: specs print their kinds in it, tables list rows in it.
KINDS = tuple(DESCRIPTIONS)

# Kinds that give the task its own BatchNormalization layers (and statistics).
BN_KINDS = frozenset({"stats", "scale_bias", "scale", "bias"})


def _valid_choices() -> str:
  return f"valid kinds: {', '.join(KINDS)} (joined with '+')"


def split(text: str) -> list[str]:
  """The kind names in a spec string, stripped, empty parts dropped."""
  return [kind.strip() for kind in text.split("+") if kind.strip()]


def normalize(kinds: Iterable[str]) -> frozenset[str]:
  """`kinds` with the combination rules applied; unknown kinds are kept.

  - `scale` + `bias` is `scale_bias`; `scale` or `bias` beside `scale_bias`
    is absorbed into it;
  - `stats` beside another BN kind is absorbed: every BN kind owns its
    statistics;
  - `full` stands alone with its head (`logits`): a fully fine-tuned model
    trains every layer and is a separate classifier.
  """
  kinds = set(kinds)
  if {"scale", "bias"} <= kinds or "scale_bias" in kinds:
    kinds = (kinds - {"scale", "bias"}) | {"scale_bias"}
  if "stats" in kinds and kinds & (BN_KINDS - {"stats"}):
    kinds.discard("stats")
  if "full" in kinds:
    kinds = {"full", "logits"}
  return frozenset(kinds)


def spec_string(kinds: Iterable[str]) -> str:
  """The canonical spec of a kind set: "full", or kinds in `KINDS` order.

  Unknown kinds (from a results.json of another version) follow, by name.
  """
  kinds = frozenset(kinds)
  if "full" in kinds:
    return "full"
  known = [kind for kind in KINDS if kind in kinds]
  return "+".join(known + sorted(kinds - set(KINDS)))


def parse(text) -> frozenset[str]:
  """The normalised kinds of the spec `text` ("kind+kind+...").

  Raises:
    ValueError: the spec is empty, names an unknown kind (with the nearest
      one as a hint), combines `full` with kinds it already trains, or
      combines `taps` with `depthwise`.
  """
  if not isinstance(text, str) or not text.strip():
    raise ValueError(f"Empty patch spec {text!r}; {_valid_choices()}.")
  kinds = set()
  for raw in text.split("+"):
    kind = raw.strip()
    if kind not in DESCRIPTIONS:
      close = difflib.get_close_matches(kind, KINDS, n=1)
      hint = f" Did you mean {close[0]!r}?" if close else ""
      raise ValueError(f"Unknown patch kind {kind!r} in spec {text!r}; "
                       f"{_valid_choices()}.{hint}")
    kinds.add(kind)
  extra = sorted(kinds - {"full", "logits"})
  if "full" in kinds and extra:
    raise ValueError(
        f"Patch spec {text!r} combines 'full' with "
        f"{extra}, which 'full' already trains; "
        f"use 'full' alone. {_valid_choices()}.")
  if {"taps", "depthwise"} <= kinds:
    raise ValueError(
        f"Patch spec {text!r} combines 'taps' with 'depthwise': 'taps' "
        "already gives every DepthwiseConv2D kernel a gated residual; use "
        f"one of them. {_valid_choices()}.")
  return normalize(kinds)


def check_kind(kind: str) -> None:
  """Raises ValueError (naming the choices) unless `kind` is a patch kind."""
  if kind not in DESCRIPTIONS:
    raise ValueError(f"Unknown patch kind {kind!r}; valid choices: "
                     f"{', '.join(KINDS)}.")
