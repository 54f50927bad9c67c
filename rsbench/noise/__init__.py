"""Smoothing distributions: one small class each, with ``sample(x, n, generator)``."""

from rsbench.noise.base import Noise
from rsbench.noise.gaussian import GaussianNoise
from rsbench.noise.mixture import GaussianMixtureNoise, evenly_spaced_sigmas, sum_of_gaussians

__all__ = ["GaussianMixtureNoise", "GaussianNoise", "Noise", "evenly_spaced_sigmas", "sum_of_gaussians"]
