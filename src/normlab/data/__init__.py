"""Datasets (a registry of sources) and the device-resident batch loader."""

from .sources import Dataset, get_source, list_datasets, load_dataset

__all__ = ["Dataset", "get_source", "list_datasets", "load_dataset"]
