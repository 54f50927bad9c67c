"""Smoothing distributions: one small class each, with ``sample(x, n, generator)``."""

from rsbench.noise.base import Noise
from rsbench.noise.gaussian import GaussianNoise

__all__ = ["GaussianNoise", "Noise"]
