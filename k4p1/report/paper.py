"""The paper's published numbers that are available here, as data with their source.

Only what ../shared/PAPER.md ("Published numbers we can cite") establishes is
here: InceptionV3 top-1 accuracy for "last layer only" and "S/B patch + last
layer" on Flowers-102, Stanford Cars and FGVC Aircraft, as quoted by TinyTL.
Every other cell of the paper's tables is unknown on these machines, and the
report prints "n/a" for it -- never an estimate.
"""

import dataclasses

NOT_AVAILABLE = "n/a"

PAPER_CITATION = ("Mudrakarta et al., \"K for the Price of 1\", ICLR 2019 "
                  "(arXiv 1810.10703)")
TINYTL_TABLE3 = ("InceptionV3, 299 px, top-1 %, quoted by TinyTL "
                 "(Cai et al., NeurIPS 2020), Table 3")


@dataclasses.dataclass(frozen=True)
class PaperNumber:
  """One published accuracy.

  Attributes:
    accuracy_pct: top-1 accuracy in percent, as published.
    paper_row: the paper's own name for the row ("S/B patch + last layer").
    source: where the number comes from.
  """
  accuracy_pct: float
  paper_row: str
  source: str


_LAST_LAYER = frozenset({"logits"})
_SCALE_BIAS = frozenset({"scale_bias", "logits"})
_ROW_NAMES = {_LAST_LAYER: "last layer only", _SCALE_BIAS: "S/B patch + last layer"}

# (model, our dataset name, our patch kinds) -> top-1 %. Our dataset names map
# to the paper's: oxford_flowers102 = Flowers-102, cars196 = Stanford Cars,
# fgvc_aircraft = FGVC Aircraft.
_TRANSFER_PCT = {
    ("inception_v3", "oxford_flowers102", _LAST_LAYER): 84.5,
    ("inception_v3", "cars196", _LAST_LAYER): 55.0,
    ("inception_v3", "fgvc_aircraft", _LAST_LAYER): 45.9,
    ("inception_v3", "oxford_flowers102", _SCALE_BIAS): 90.4,
    ("inception_v3", "cars196", _SCALE_BIAS): 81.0,
    ("inception_v3", "fgvc_aircraft", _SCALE_BIAS): 70.7,
}

PAPER_TRANSFER = {
    key: PaperNumber(pct, _ROW_NAMES[key[2]], f"{PAPER_CITATION}; {TINYTL_TABLE3}")
    for key, pct in _TRANSFER_PCT.items()
}


def paper_transfer_accuracy(model: str, dataset: str,
                            kinds: frozenset[str]) -> PaperNumber | None:
  """The paper's transfer accuracy for (model, dataset, patch kinds), or None.

  Args:
    model: our architecture name ("inception_v3").
    dataset: our dataset name exactly ("cars196"; a label subset such as
      "cars196:0-9" is a different problem and has no paper number).
    kinds: the patch's kinds, e.g. frozenset({"scale_bias", "logits"}).

  Returns:
    The PaperNumber, or None where the paper's number is not available here.
  """
  return PAPER_TRANSFER.get((model, dataset, frozenset(kinds)))
