"""`keras`, imported on first use.

Importing Keras imports TensorFlow, which takes several seconds of CPU. The backbone registry, the
data report and the CLI's parser need neither, so the modules they import (`lib.backbones`,
`lib.data.augment`, `lib.models`, `lib.export`) name Keras through `keras = lazy_module("keras")`
and the import happens at the first attribute lookup (`keras.Model`, `keras.layers.Dense`), inside
a function that builds or loads a model. Annotations stay strings (`from __future__ import
annotations`), so they import nothing.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule:
    """Stands in for a module and imports it at the first attribute lookup.

    Args:
        name: the module's import name, e.g. `"keras"`.
    """

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str):
        # Only called for names this object lacks, i.e. the module's own attributes.
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)

    def __repr__(self) -> str:
        state = "imported" if self._module is not None else "not imported yet"
        return f"<lazy module {self._name!r} ({state})>"


def lazy_module(name: str) -> LazyModule:
    """Returns a stand-in for module `name` that imports it at the first attribute lookup."""
    return LazyModule(name)


def lazy_exports(package: dict, lazy: dict[str, tuple[str, ...]]):
    """A package's `__getattr__` and `__dir__` (PEP 562) that import each name's module at its
    first lookup, so `from package import name` works without importing every submodule up front.

    Args:
        package: the package's `globals()`; a looked-up name is stored there, so later lookups
            skip `__getattr__`.
        lazy: module import name -> the names it provides.

    Returns:
        `(__getattr__, __dir__)`, to assign at the package's top level.
    """
    module_of = {name: module for module, names in lazy.items() for name in names}
    package_name = package["__name__"]

    def __getattr__(name: str):
        if name not in module_of:
            raise AttributeError(f"module {package_name!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module_of[name]), name)
        package[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*package, *module_of})

    return __getattr__, __dir__
