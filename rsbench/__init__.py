"""rsbench: an experiment runner for randomized-smoothing certified robustness."""

__version__ = "0.1.0"
