"""TensorBoard summaries: scalars and hyper-parameters.

Scalars are written with the low-level `tf.summary.write` and the "scalars"
plugin's metadata, which is exactly what `tf.summary.scalar` writes; this keeps
summaries working when the `tensorboard` package (which TF 2.21 no longer
installs) is absent. Hyper-parameters use TensorBoard's HParams plugin when it
is installed, and a Markdown table in the Text tab otherwise.
"""

from typing import Any, Mapping, Optional

from absl import logging
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
_TEXT_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text"))


def _hparam_value(value):
  """HParams accept bool, int, float and str only."""
  if isinstance(value, (bool, int, float, str)):
    return value
  return str(value)


class SummaryWriter:
  """Writes a run's summaries to one event directory; a no-op when disabled.

  Non-chief workers of a multi-worker run pass `enabled=False`.
  """

  def __init__(self, logdir: str, enabled: bool = True):
    self._writer = (tf.summary.create_file_writer(logdir) if enabled
                    else tf.summary.create_noop_writer())

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    """Writes `{tag: value}` at `step`."""
    with self._writer.as_default():
      for tag, value in values.items():
        tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step,
                         metadata=_SCALAR_METADATA)

  def text(self, step: int, tag: str, markdown: str) -> None:
    with self._writer.as_default():
      tf.summary.write(tag, tf.constant(markdown), step=step,
                       metadata=_TEXT_METADATA)

  def hparams(self, hparams: Mapping[str, Any], trial_id: Optional[str] = None) -> None:
    """Records the run's hyper-parameters (HParams tab, or Text tab fallback)."""
    values = {k: _hparam_value(v) for k, v in hparams.items()}
    try:
      # pylint: disable=g-import-not-at-top
      from tensorboard.plugins.hparams import api as hp
    except ImportError:
      hp = None
    if hp is not None:
      with self._writer.as_default():
        hp.hparams(values, trial_id=trial_id)
      return
    logging.info("tensorboard is not installed: hparams go to the Text tab.")
    rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(values.items()))
    self.text(0, "hparams", "| hparam | value |\n|---|---|\n" + rows)

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()
