"""rsbench: an experiment runner for randomized-smoothing certified robustness."""

__version__ = "0.1.0"


def __getattr__(name: str):  # rsbench.smooth, rsbench.Smoothed: imported on first use (the CLI starts without them)
    if name == "smooth":
        from rsbench.api import smooth

        return smooth
    if name == "Smoothed":
        from rsbench.smoothed import Smoothed

        return Smoothed
    raise AttributeError(f"module 'rsbench' has no attribute {name!r}")


__all__ = ["Smoothed", "smooth"]
