"""Offline datasets: D4RL-format HDF5 files (by name or path), their views, and making our own."""

from synthrl.data.dataset import (
    DatasetChecksumWarning,
    DatasetValueWarning,
    OfflineDataset,
    d4rl_dataset_dir,
    load_dataset,
    resolve_dataset,
)
from synthrl.data.make import make_dataset, rollout, write_d4rl_hdf5
from synthrl.data.official import LEVELS, OFFICIAL_V2, d4rl_file_name

__all__ = [
    "DatasetChecksumWarning", "DatasetValueWarning", "OfflineDataset", "d4rl_dataset_dir", "load_dataset", "resolve_dataset",
    "make_dataset", "rollout", "write_d4rl_hdf5", "LEVELS", "OFFICIAL_V2", "d4rl_file_name",
]
