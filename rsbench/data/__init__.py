"""Dataset registry: name -> (spec, loader). Every loader returns pixels in [0, 1]."""

from rsbench.data.registry import DATASETS, DatasetSpec, load_split

# Importing the modules registers their datasets.
from rsbench.data import cifar10, embedded, standin, torchvision_sets  # noqa: E402,F401  isort: skip

__all__ = ["DATASETS", "DatasetSpec", "load_split"]
