"""Imports every family module, which registers its entries. Order here is the zoo's order."""

# ruff: noqa: I001  (import order is registration order, so it is kept by hand)
from lib.backbones import lite  # noqa: F401  EfficientNet-Lite0/1/2, real weights offline
from lib.backbones import applications  # noqa: F401  keras.applications, Keras cache or download
from lib.backbones import hub_compat  # noqa: F401  TF Hub handles, registered at runtime
from lib.backbones import tiny  # noqa: F401  hidden test backbone
