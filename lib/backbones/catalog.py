"""Every built-in backbone spec, in the zoo's order. The registry is built from `SPECS` once."""

from lib.backbones import applications, lite, tiny
from lib.backbones.spec import BackboneSpec

# Lite first: real ImageNet weights offline. Then keras.applications (Keras cache or a download),
# then the hidden test backbone. TF Hub handles are not listed: each resolves to its own spec.
SPECS: tuple[BackboneSpec, ...] = (*lite.SPECS, *applications.SPECS, tiny.SPEC)
