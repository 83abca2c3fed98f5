"""The OpenAPI description of the operator console (control/console.py): the shell, its static
files, the server-rendered page fragments and the live event stream; merged into
`openapi.spec()` (openapi.py imports this module, not the other way round)."""

from __future__ import annotations

from typing import Any

HTML = "text/html"
ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
PROTECTED = {
    "401": {"description": "no bearer token (when tokens are configured)", **ERROR},
    "403": {"description": "the token is not valid", **ERROR},
}
SHELL = {
    "200": {
        "description": "the console's shell: HTML with no data, served without a token",
        "content": {HTML: {"schema": {"type": "string"}}},
    }
}


def _path_text(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


PATHS: dict[str, Any] = {
    "/console": {
        "get": {
            "operationId": "console",
            "tags": ["console"],
            "summary": "The operator console (open it in a browser)",
            "security": [],
            "responses": SHELL,
        }
    },
    "/console/{tail}": {
        "get": {
            "operationId": "console_page",
            "tags": ["console"],
            "summary": "A page of the console: the same shell, whose script loads the page",
            "security": [],
            "parameters": [_path_text("tail", "reports/<id>, runs/<execution id>")],
            "responses": {**SHELL, "404": {"description": "static/<a file that is not>", **ERROR}},
        }
    },
    "/console/static/{name}": {
        "get": {
            "operationId": "console_static",
            "tags": ["console"],
            "summary": "The console's own script and style sheet",
            "security": [],
            "parameters": [_path_text("name", "console.js or console.css")],
            "responses": {
                "200": {
                    "description": "the file",
                    "content": {
                        "text/javascript": {"schema": {"type": "string"}},
                        "text/css": {"schema": {"type": "string"}},
                    },
                },
                "404": {"description": "no such file", **ERROR},
            },
        }
    },
    "/api/console/view/{page}": {
        "get": {
            "operationId": "console_view",
            "tags": ["console"],
            "summary": "A console page's server-rendered HTML fragment",
            "description": (
                "Pages: the empty page (overview), `reports/<config id>` (history with the "
                "query filters status, trigger, since, until, after, before, limit), "
                "`runs/<execution id>`."
            ),
            "parameters": [_path_text("page", "the page, as in the console's address")],
            "responses": {
                "200": {
                    "description": "the fragment",
                    "content": {HTML: {"schema": {"type": "string"}}},
                },
                "400": {"description": "a bad filter, naming the key", **ERROR},
                "404": {"description": "no such page, report or run", **ERROR},
                **PROTECTED,
            },
        }
    },
    "/api/console/events": {
        "get": {
            "operationId": "console_events",
            "tags": ["console"],
            "summary": "Server-sent events: lifecycle events as they happen, and the live runs",
            "description": (
                "`lifecycle` events carry one state change of an execution on this node as it "
                "happens (execution_id, transition, old, new, terminal, reason, at); with "
                "`execution_id`, only that execution's. A `runs` event (first, after each "
                "change, and every 15 s while something runs) carries the PENDING and RUNNING "
                "executions of every node (with this node's progress of its own) and, with "
                "`execution_id`, that execution's state. `progress` events carry this node's "
                "rows so far once a second while it runs something. A client sending `Accept: "
                "text/event-stream` is followed while idle (a `: keep-alive` comment every "
                "15 s); another gets its answer, one snapshot and `end`, once nothing runs. "
                "Each stream has a bounded queue: a client that falls behind gets one fresh "
                "`runs` snapshot instead of the backlog. The stream ends with an `end` event "
                "when the watched execution has finished, after five minutes, or when the "
                "daemon stops; a client reconnects."
            ),
            "parameters": [
                {
                    "name": "execution_id",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "maxLength": 36},
                }
            ],
            "responses": {
                "200": {
                    "description": "the event stream",
                    # No schema: each event is an object (event, data) that OpenAPI 3.1 has no
                    # keyword for (3.2's itemSchema); a schema of the whole text would be
                    # checked against each event by schemathesis (ST108), and read as one JSON
                    # document by generated clients.
                    "content": {"text/event-stream": {}},
                },
                "400": {"description": "not an execution id", **ERROR},
                **PROTECTED,
            },
        }
    },
}
