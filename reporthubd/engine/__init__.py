"""The execution engine: pipeline, bounded pool, parameters, workspace and janitor.

Exports resolve lazily, so `reporthubd --help` does not import the whole pipeline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reporthubd.engine.engine import Engine, EngineStopped, UnknownConfig

__all__ = ["Engine", "EngineStopped", "UnknownConfig"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from reporthubd.engine import engine

        return getattr(engine, name)
    raise AttributeError(name)
