"""The connector contract fixture: `source` is parametrized over every data-source type (with
the fallback servers of ../shared/TESTING.md where no real server can run); `connector` is an
opened connector on it."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Iterator

import pytest

from reporthubd.connectors import base
from tests.connectors import builders, sources
from tests.connectors.fallback_servers import SilentListener


def _written(kind: str) -> bool:
    module = base.REGISTRY[kind].partition(":")[0]
    return importlib.util.find_spec(module) is not None


@pytest.fixture(scope="session", params=list(builders.SOURCES))
def source(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sources.Source]:
    label = str(request.param)
    kind = builders.KINDS[label]
    if not _written(kind):
        pytest.skip(f"the {kind} connector module is not in this tree yet")
    yield from builders.SOURCES[label](tmp_path_factory)


@pytest.fixture
async def connector(source: sources.Source) -> AsyncIterator[base.Connector]:
    if source.no_server:
        pytest.skip(source.no_server.reason)
    conn = base.create(source.datasource())
    await conn.open()
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    listener = SilentListener()
    yield listener.port
    listener.close()
