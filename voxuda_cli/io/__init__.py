"""Files in and out: MRC volumes, the HDF5 dataset format v1, and the "dataset" argument."""

from voxuda_cli.io.atomic import atomic_output
from voxuda_cli.io.dataset import Dataset, DatasetWriter, read_h5_dataset, write_dataset
from voxuda_cli.io.mrc import read_mrc, write_mrc
from voxuda_cli.io.sources import iter_volumes, read_dataset
from voxuda_cli.io.volume import Volume

__all__ = [
    "Dataset",
    "DatasetWriter",
    "Volume",
    "atomic_output",
    "iter_volumes",
    "read_dataset",
    "read_h5_dataset",
    "read_mrc",
    "write_dataset",
    "write_mrc",
]
