"""The OpenAPI description as a generated client sees it (issue 21, item 3): every operation has
an operationId and a tag, every route the app registers is described and nothing else is, and a
client that openapi-python-client generates from the served description builds without warnings
and drives a real daemon (with a token): run each output format, read the run back, download the
file with the concrete content type the description declares."""

from __future__ import annotations

import importlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from openapi_spec_validator import validate

from reporthubd.control import openapi, openapi_schemas
from reporthubd.control.app import build_app
from reporthubd.control.runtime import Runtime
from tests.daemon_process import DaemonProcess, NotifySocket, call, write_config

TOKEN = "generated-client-token-0123456789"
PACKAGE = "reporthubd_generated_client"
METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}

# name -> (output_format, format_options as TOML, query, Content-Type of the download)
REPORTS = {
    "csv_bom": (
        "csv",
        '{ encoding = "utf-8-bom" }',
        "SELECT 'café' AS word",
        openapi_schemas.CSV_UTF8,
    ),
    "csv_plain": ("csv", "{}", "SELECT 'café' AS word", openapi_schemas.CSV_UTF8),
    "csv_latin": ("csv", '{ encoding = "latin-1" }', "SELECT 'café' AS word", "text/csv"),
    "sheet": ("excel", "{}", "SELECT n FROM numbers", openapi_schemas.XLSX),
    "paper": ("pdf", "{}", "SELECT n FROM numbers", "application/pdf"),
    "data": ("json", "{}", "SELECT n FROM numbers", "application/json"),
}


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def test_every_operation_has_a_unique_operation_id_and_a_declared_tag() -> None:
    document = openapi.spec()
    validate(document)  # type: ignore[arg-type]
    declared = {tag["name"] for tag in document["tags"]}
    ids = []
    for method, path, operation in _operations(document):
        assert operation.get("operationId"), f"{method.upper()} {path} has no operationId"
        assert operation["operationId"].isidentifier(), operation["operationId"]
        assert operation.get("tags"), f"{method.upper()} {path} has no tag"
        assert set(operation["tags"]) <= declared, (method, path, operation["tags"])
        ids.append(operation["operationId"])
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_every_route_is_described_and_every_description_is_a_route() -> None:
    app = build_app(cast(Runtime, object()), max_body_bytes=1024)
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"  # aiohttp adds HEAD to GET
    }
    described = {(method, path) for method, path, _ in _operations(openapi.spec())}
    assert routes - described == set(), "routes the description does not have"
    assert described - routes == set(), "described operations no route serves"


def test_downloads_declare_concrete_content_types() -> None:
    file = openapi.spec()["paths"]["/api/execution/{execution_id}/file"]["get"]
    content = file["responses"]["200"]["content"]
    assert "*/*" not in content
    for media in (
        openapi_schemas.CSV_UTF8,
        openapi_schemas.XLSX,
        "application/pdf",
        "application/json",
    ):
        assert media in content, media


def _catalog(tmp: Path, source: Path) -> str:
    out = [
        '[[datasources]]\nname = "local"\ntype = "sqlite"\n'
        f'connection_config = {{ path = "{source}" }}\n'
    ]
    for name, (fmt, options, query) in ((n, r[:3]) for n, r in REPORTS.items()):
        out.append(
            f'[[reports]]\nname = "{name}"\ndatasource = "local"\noutput_format = "{fmt}"\n'
            f'query = "{query}"\nformat_options = {options}\n'
        )
    return "\n".join(out)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, dict[str, int]]]:
    tmp = tmp_path_factory.mktemp("client")
    source = tmp / "source.db"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE numbers (n INTEGER)")
        db.executemany("INSERT INTO numbers VALUES (?)", [(n,) for n in range(20)])
    catalog = tmp / "catalog.toml"
    catalog.write_text(_catalog(tmp, source), encoding="utf-8")
    (tmp / "tokens").write_text(TOKEN + "\n")
    config, port = write_config(
        tmp, f"sqlite:///{tmp / 'store.db'}", control={"token_file": str(tmp / "tokens")}
    )
    notify = NotifySocket(tmp)
    process = DaemonProcess(config, env={"NOTIFY_SOCKET": str(notify.path)})
    try:
        notify.wait_for("READY=1")
        subprocess.run(
            [sys.executable, "-m", "reporthubd", "apply", str(catalog), "-c", str(config)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        with sqlite3.connect(tmp / "store.db") as db:
            ids = dict(db.execute("SELECT name, id FROM report_configs").fetchall())
        yield port, {str(name): int(i) for name, i in ids.items()}
    finally:
        process.stop()
        notify.close()
    assert "control plane handler failed" not in process.output()


@pytest.fixture(scope="module")
def client_package(
    daemon: tuple[int, dict[str, int]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """The client openapi-python-client generates from the description the daemon serves."""
    port, _ = daemon
    status, document = call(port, "/api/openapi.json", token=TOKEN)
    assert status == 200
    tmp = tmp_path_factory.mktemp("generated")
    (tmp / "openapi.json").write_text(json.dumps(document), encoding="utf-8")
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            str(tmp / "openapi.json"),
            "--meta",
            "none",
            "--output-path",
            str(tmp / PACKAGE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "warning" not in output.lower(), output  # builds without warnings
    # The code generated from the description type-checks (mypy --strict); the generator's
    # own client.py template, the same for every API, has errors of its own in 0.29.
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", PACKAGE],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in checked.stdout.splitlines() if ": error:" in line]
    assert all(line.startswith(f"{PACKAGE}/client.py:") for line in errors), checked.stdout
    sys.path.insert(0, str(tmp))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _api(package: Any, tag: str, operation: str) -> Any:
    return importlib.import_module(f"{package.__name__}.api.{tag}.{operation}")


def test_the_generated_client_refuses_without_the_token(
    daemon: tuple[int, dict[str, int]], client_package: Any
) -> None:
    port, _ = daemon
    with client_package.Client(base_url=f"http://127.0.0.1:{port}") as anonymous:
        status = _api(client_package, "scheduler", "scheduler_status")
        answer = status.sync_detailed(client=anonymous)
    assert answer.status_code == 401
    assert answer.parsed.status == "error" and answer.parsed.error


def test_the_generated_client_runs_each_format_and_downloads_it(
    daemon: tuple[int, dict[str, int]], client_package: Any
) -> None:
    port, ids = daemon
    with client_package.AuthenticatedClient(
        base_url=f"http://127.0.0.1:{port}", token=TOKEN, raise_on_unexpected_status=True
    ) as client:
        _run_each_format(client_package, client, ids)


def _run_each_format(client_package: Any, client: Any, ids: dict[str, int]) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    execute = _api(client_package, "executions", "execute_report")
    get_execution = _api(client_package, "executions", "get_execution")
    download = _api(client_package, "executions", "download_execution_file")
    for name, (_, _, _, media_type) in REPORTS.items():
        ran = execute.sync_detailed(
            ids[name], client=client, body=models.ExecuteRequest(wait=60, deliver=False)
        )
        assert ran.status_code == 200, (name, ran.content)
        execution = ran.parsed.data
        assert execution.status.value == "COMPLETED", (name, execution.error_message)
        again = get_execution.sync(execution.id, client=client)
        assert again.data.id == execution.id and again.data.file_name == execution.file_name

        got = download.sync_detailed(execution.id, client=client)
        assert got.status_code == 200, name
        assert got.headers["Content-Type"] == media_type, name
        assert "Content-Encoding" not in got.headers, name
        assert execution.file_name in got.headers["Content-Disposition"]
        body = got.parsed.payload.read()
        assert body == got.content and len(body) == execution.file_size, name
        if name == "csv_bom":
            assert body.startswith(b"\xef\xbb\xbf") and "café" in body[3:].decode("utf-8")
        elif name == "csv_plain":
            assert "café" in body.decode("utf-8")
        elif name == "csv_latin":
            assert b"caf\xe9" in body
        elif name == "paper":
            assert body.startswith(b"%PDF-")
        elif name == "sheet":
            assert body.startswith(b"PK")
        else:
            assert isinstance(json.loads(body), list | dict)

    listed = _api(client_package, "executions", "list_executions").sync(client=client, limit=50)
    assert listed.data.total >= len(REPORTS)
    status = _api(client_package, "scheduler", "scheduler_status").sync(client=client)
    # typed models: the scheduler's lateness, on-time and catch-up apart (no schedule fired)
    assert status.data.fire_lateness.fires == 0 and status.data.catch_up_lateness.fires == 0
    assert status.data.catch_up_lateness.p50_ms is None
