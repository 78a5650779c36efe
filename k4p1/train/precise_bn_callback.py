"""`PreciseBN`: the Keras callback of PreciseBN, for models trained with `fit`."""

from typing import Optional

import keras

from k4p1.train import precise_bn


class PreciseBN(keras.callbacks.Callback):
  """Keras callback: PreciseBN statistics for models trained with `fit`.

  ```python
  model.fit(train_ds, epochs=3, callbacks=[k4p1.train.PreciseBN(bn_ds, 200)])
  ```
  `bn_ds` should be the training data with evaluation preprocessing, shuffled,
  in batches of the training batch size (e.g. `k4p1.data.build_dataset(...,
  training=False, shuffle=True)`). Without it, a patch trained for a few
  hundred steps evaluates with mostly the base's moving statistics.
  """

  def __init__(self, dataset, num_batches: Optional[int] = precise_bn.DEFAULT_NUM_BATCHES,
               every_epoch: bool = True):
    """Creates the callback.

    Args:
      dataset: batches of training images (see the class doc).
      num_batches: at most this many batches per update (None: all).
      every_epoch: recompute after every epoch's training (before `fit`'s
        validation, so its metrics use them); False: at the end of training.
    """
    super().__init__()
    self.dataset = dataset
    self.num_batches = num_batches
    self.every_epoch = every_epoch
    self._precise = None
    self._in_fit = self._stale = False
    self.last_update = None

  def _update(self):
    if self._precise is None:
      self._precise = precise_bn.PreciseBatchNorm([(self.model, self.dataset)],
                                       num_batches=self.num_batches)
    self.last_update = self._precise.update()
    self._stale = False

  def on_train_begin(self, logs=None):
    self._in_fit, self._stale = True, False

  def on_train_batch_end(self, batch, logs=None):
    self._stale = True

  def on_test_begin(self, logs=None):
    # `fit` validates before `on_epoch_end`: update first, so that the
    # validation metrics use the new statistics.
    if self.every_epoch and getattr(self, "_in_fit", False) and self._stale:
      self._update()

  def on_epoch_end(self, epoch, logs=None):
    if self.every_epoch and self._stale:
      self._update()

  def on_train_end(self, logs=None):
    self._in_fit = False
    if getattr(self, "_stale", False):
      self._update()
