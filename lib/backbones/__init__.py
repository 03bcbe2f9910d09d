"""Backbones: the registry, its families, and ImageNet labels."""

from lib.backbones.registry import (  # noqa: F401
    CACHED,
    DOWNLOAD_NEEDED,
    OFFLINE,
    RANDOM,
    Backbone,
    BackboneSpec,
    feature_model,
    get_spec,
    list_specs,
    load_backbone,
    register_backbone,
)
