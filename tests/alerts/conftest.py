"""Fixtures of the alert tests: a migrated store per test (SQLite unless
REPORTHUB_RELIABILITY_STORE names a server) and the check that no daemon log shows a crash."""

from tests.reliability.conftest import (  # noqa: F401  (fixtures)
    no_crash_in_daemon_logs,
    pg_source,
    rstore,
    rstore_url,
)
