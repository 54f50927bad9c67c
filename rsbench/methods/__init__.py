"""Smoothing methods by name: each pairs a noise distribution with its certificate."""

from rsbench.methods.base import METHODS, Method, make_method, method_from_params

from rsbench.methods import dsmooth, gaussian, idrs, laplace, mog, sra  # noqa: E402,F401  isort: skip

__all__ = ["METHODS", "Method", "make_method", "method_from_params"]
