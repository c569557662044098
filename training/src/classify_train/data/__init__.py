"""Data set loaders and the validation split. Only numpy and the standard library: no TensorFlow here,
so commands that only read data (``classify-train split``) start in a second, not in five."""

from classify_train.data.datadir import DATA_DIR_ENV, resolve_data_dir
from classify_train.data.dataset import DataError, Dataset

__all__ = ["DATA_DIR_ENV", "DataError", "Dataset", "resolve_data_dir"]
