"""Test support: make `tfds.testing.mock_data` pass k4p1's prepared-dataset check.

`k4p1.data.build_dataset` refuses a TFDS dataset that is not prepared in
`data_dir` (fast, clear offline failure). `tfds.testing.mock_data` fakes the
records but not the metadata, so tests first write the metadata of a prepared
dataset (split names and sizes from the registry, no records) with
`write_mock_metadata`, then read it under `mock_data(data_dir=...)`.
"""

import tensorflow_datasets as tfds
from tensorflow_datasets.core import splits as splits_lib

from k4p1.data import registry


def write_mock_metadata(data_dir, name: str, num_examples: int) -> None:
  """Writes prepared-dataset metadata for registry dataset `name` under `data_dir`.

  Args:
    data_dir: the TFDS data directory the test passes to `build_dataset`.
    name: a registry name (a label subset suffix is allowed).
    num_examples: examples per split, as `mock_data(num_examples=...)` yields.
  """
  info = registry.get_dataset_info(name)
  builder = tfds.builder(info.tfds_name, data_dir=str(data_dir), try_gcs=False)
  split_names = info.train_split.split("+") + [info.eval_split]
  builder.info.set_splits(splits_lib.SplitDict([
      splits_lib.SplitInfo(
          name=split, shard_lengths=[num_examples], num_bytes=0,
          filename_template=tfds.core.ShardedFileTemplate(
              data_dir=builder.data_path, dataset_name=builder.name, split=split,
              filetype_suffix="tfrecord"))
      for split in split_names]))
  builder.data_path.mkdir(parents=True, exist_ok=True)
  builder.info.write_to_directory(builder.data_path)
