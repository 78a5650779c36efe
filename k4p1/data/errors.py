"""Errors raised by `k4p1.data`."""


class DatasetNotPreparedError(ValueError):
  """A TFDS dataset is not prepared in the data directory and cannot be prepared now.

  Raised before TFDS tries any download, so a machine without network access sees
  this message within seconds instead of a long retry loop. The message names
  the dataset, the directory searched and the command that prepares it.
  """


class BadImageError(ValueError):
  """An image file of a folder dataset cannot be decoded (a corrupt body).

  The header check at resolve time passed, so the file fails only when the
  pipeline decodes it, mid-run. `k4p1.data.naming_bad_images` raises this
  from TensorFlow's error; the message names the file and what to do.

  Attributes:
    path: the file that failed to decode.
  """

  def __init__(self, path: str):
    super().__init__(
        f"Cannot decode image file {path!r} (corrupt, or not JPEG/PNG/BMP/"
        "GIF): remove it, or skip such files with skip_bad_images=True "
        "(--skip_bad_images).")
    self.path = path
