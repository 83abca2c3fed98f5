"""Secret references and the registry of secret values that logging must never show.

A secret in the config file or in a `connection_config` / `delivery_config` JSON column may be
inline, `{"env": "NAME"}` or `{"file": "/path"}`. References are resolved at the moment the
secret is needed, and every resolved or inline secret value is remembered here so the log
redaction processor can blank it wherever it appears, even inside an exception message.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reporthubd.config import EnvRef, FileRef

SECRET_KEY_RE = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|access[_-]?key"
    r"|credentials[_-]?json|authorization|pwd)$",
    re.IGNORECASE,
)
MASK = "***"
_MIN_SECRET_LENGTH = 4

_known: set[str] = set()
_lock = threading.Lock()


class SecretError(Exception):
    """A reference that cannot be resolved; the message names the reference, not a value."""


def is_secret_key(key: str) -> bool:
    return bool(SECRET_KEY_RE.search(key))


def remember(value: str) -> str:
    """Register a secret value for redaction; return it unchanged."""
    if len(value) >= _MIN_SECRET_LENGTH:
        with _lock:
            _known.add(value)
    return value


def known_secrets() -> frozenset[str]:
    with _lock:
        return frozenset(_known)


def resolve(value: object, *, where: str = "secret") -> str:
    """Resolve an inline string, {"env": NAME} or {"file": PATH} (dict or model) to its value."""
    if isinstance(value, EnvRef):
        value = {"env": value.env}
    elif isinstance(value, FileRef):
        value = {"file": value.file}
    if isinstance(value, str):
        return remember(value)
    if isinstance(value, Mapping) and len(value) == 1:
        if "env" in value:
            name = str(value["env"])
            if name not in os.environ:
                raise SecretError(f"{where}: environment variable {name} is not set")
            return remember(os.environ[name])
        if "file" in value:
            path = Path(str(value["file"]))
            try:
                return remember(path.read_text(encoding="utf-8").rstrip("\r\n"))
            except OSError as exc:
                raise SecretError(f"{where}: cannot read {path}: {exc.strerror}") from None
    raise SecretError(f'{where}: expected a string, {{"env": NAME}} or {{"file": PATH}}')


def is_reference(value: object) -> bool:
    return isinstance(value, Mapping) and len(value) == 1 and ("env" in value or "file" in value)


def remember_inline(document: Any) -> None:
    """Register every inline secret found under a secret-looking key of a JSON document."""
    if isinstance(document, Mapping):
        for key, value in document.items():
            if isinstance(value, str) and is_secret_key(str(key)):
                remember(value)
            else:
                remember_inline(value)
    elif isinstance(document, list):
        for item in document:
            remember_inline(item)


def mask_document(document: Any) -> Any:
    """A copy with values under secret-looking keys masked (references are kept as-is)."""
    if isinstance(document, Mapping):
        return {
            key: (
                value
                if is_reference(value)
                else MASK
                if is_secret_key(str(key)) and value not in (None, "")
                else mask_document(value)
            )
            for key, value in document.items()
        }
    if isinstance(document, list):
        return [mask_document(item) for item in document]
    return document


_URL_PASSWORD_RE = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@"
)
_KV_PASSWORD_RE = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|secret|token|api[_-]?key)\s*[=:]\s*)(?P<quote>['\"]?)"
    r"(?P<value>[^'\";&\s,}]+)",
    re.IGNORECASE,
)
_BEARER_RE = re.compile(r"(?P<key>\bBearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)


def redact_text(text: str) -> str:
    """Blank DSN passwords, key=value secrets, bearer tokens and every known secret value."""
    text = _URL_PASSWORD_RE.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _KV_PASSWORD_RE.sub(lambda m: f"{m['key']}{m['quote']}{MASK}", text)
    text = _BEARER_RE.sub(lambda m: f"{m['key']}{MASK}", text)
    for secret in sorted(known_secrets(), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact(value: Any) -> Any:
    """Recursively redact a structure: secret keys masked, every string scrubbed."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            key: MASK
            if is_secret_key(str(key))
            and value[key] not in (None, "")
            and not is_reference(value[key])
            else redact(value[key])
            for key in value
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value
