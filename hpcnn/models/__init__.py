"""Networks: built-in MLP / simple CNN / small ResNet, and torchvision models by name."""
from .registry import create_model

__all__ = ["create_model"]
