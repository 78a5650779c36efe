"""Input pipelines: dataset registry, offline digits, preprocessing, tf.data.

```python
from k4p1 import data
info = data.get_dataset_info("mnist5k:0-4")        # registry entry (subset)
info = data.get_dataset_info("folder:~/photos")    # one folder per class
info = data.get_dataset_info("tfds:beans")         # any TFDS image classifier
ds = data.build_dataset("cifar10", "train", global_batch_size=96, image_size=224,
                        training=True, strategy=strategy, data_dir="~/tfds")
```
Importing this package registers the `fgvc_aircraft` TFDS builder.
"""

from k4p1.data import fgvc_aircraft
from k4p1.data import folder
from k4p1.data import offline
from k4p1.data import preprocess
from k4p1.data import validation
from k4p1.data.catalog import default_image_size
from k4p1.data.catalog import get_dataset_info
from k4p1.data.catalog import prepare_dataset
from k4p1.data.catalog import split_names
from k4p1.data.errors import BadImageError
from k4p1.data.errors import DatasetNotPreparedError
from k4p1.data.image_files import naming_bad_images
from k4p1.data.pipeline import build_dataset
from k4p1.data.preprocess import ARCHITECTURE_PREPROCESS
from k4p1.data.preprocess import get_preprocess_fn
from k4p1.data.registry import ARCHITECTURE_IMAGE_SIZE
from k4p1.data.registry import DATASETS
from k4p1.data.registry import DatasetInfo
from k4p1.data.registry import FOLDER_PREFIX
from k4p1.data.registry import TFDS_PREFIX
from k4p1.data.tfds_source import prepared_builder
from k4p1.data.tfds_source import tfds_mocked

__all__ = [
    "ARCHITECTURE_IMAGE_SIZE",
    "ARCHITECTURE_PREPROCESS",
    "BadImageError",
    "DATASETS",
    "DatasetInfo",
    "DatasetNotPreparedError",
    "FOLDER_PREFIX",
    "TFDS_PREFIX",
    "build_dataset",
    "default_image_size",
    "fgvc_aircraft",
    "folder",
    "get_dataset_info",
    "get_preprocess_fn",
    "naming_bad_images",
    "offline",
    "prepare_dataset",
    "prepared_builder",
    "preprocess",
    "split_names",
    "tfds_mocked",
    "validation",
]
