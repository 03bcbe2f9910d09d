"""Imports every family module, which registers its entries. Order here is the zoo's order."""

from lib.backbones import lite  # noqa: F401  EfficientNet-Lite0/1/2, real weights offline
from lib.backbones import tiny  # noqa: F401  hidden test backbone
