"""Backbones: the read-only registry, its families, TF Hub handles, and ImageNet labels."""

from lib.backbones.registry import (  # noqa: F401
    feature_model,
    get_spec,
    list_specs,
    load_backbone,
)
from lib.backbones.spec import (  # noqa: F401
    CACHED,
    DOWNLOAD_NEEDED,
    OFFLINE,
    RANDOM,
    Backbone,
    BackboneSpec,
)
