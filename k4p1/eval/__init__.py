"""Evaluation of task models: top-1 accuracy over an evaluation split."""

from k4p1.eval.accuracy import evaluate_accuracy
from k4p1.eval.accuracy import make_accuracy_fn
