"""Datasets: sources (folder, zip, built-in, TFDS), the data report, splits, tf.data, augmentation.

`sources`, `report` and `split` import no TensorFlow; `pipeline` and `augment` do, so import them
from their modules when you need them.
"""

from lib.data.builtin import BUILTIN_DATASETS, DEFAULT_DATASET
from lib.data.report import DataReport, cross_split_duplicates
from lib.data.sources import DatasetIndex, ImageRecord, load_dataset, load_folder, load_zip
from lib.data.split import Split, split_dataset

__all__ = [
    "BUILTIN_DATASETS",
    "DEFAULT_DATASET",
    "DataReport",
    "DatasetIndex",
    "ImageRecord",
    "Split",
    "cross_split_duplicates",
    "load_dataset",
    "load_folder",
    "load_zip",
    "split_dataset",
]
