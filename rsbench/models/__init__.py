"""Model registry: architectures by name, each wrapped with the dataset's normalisation layer."""

from rsbench.models.registry import MODELS, NormalizedModel, build_model

from rsbench.models import cifar_resnet, cifar_zoo, imagenet, orthogonal, small  # noqa: E402,F401  isort: skip

__all__ = ["MODELS", "NormalizedModel", "build_model"]
