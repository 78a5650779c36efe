"""Errors raised by `k4p1.data`."""


class DatasetNotPreparedError(ValueError):
  """A TFDS dataset is not prepared in the data directory and cannot be prepared now.

  Raised before TFDS tries any download, so a machine without network access sees
  this message within seconds instead of a long retry loop. The message names
  the dataset, the directory searched and the command that prepares it.
  """
