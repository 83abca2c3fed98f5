"""Lazy plugin loading for the registries that map the store's strings (`type`, `output_format`,
`method`) to `"module:Class"`: a driver is imported only when a row of its kind is used."""

from __future__ import annotations

import importlib
from collections.abc import Mapping


class MissingLibrary(Exception):
    """The plugin's module (or a library it needs) is not installed; `name` says which."""

    def __init__(self, name: str | None) -> None:
        super().__init__(name)
        self.name = name


def load(registry: Mapping[str, str], key: str) -> type | None:
    """The class registered for `key`, imported now; None for an unknown key. Raises
    MissingLibrary when the import fails for a missing module."""
    target = registry.get(key)
    if target is None:
        return None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MissingLibrary(exc.name) from None
    cls: type = getattr(module, class_name)
    return cls
