"""Where an audience's file goes: the entries of a driver row's recipients column.

An entry is an e-mail address (`m@example.com`, or `email:m@example.com`), or a chat target
named by its method:

- `slack:C0123456789`: a Slack channel ID;
- `teams:https://...`: a Teams (Workflows) webhook URL;
- `google_chat:https://...`: a Google Chat space's webhook URL.

Per audience, its addresses take the place of each email delivery's recipients, and its chat
target of a method takes the place of each delivery of that method's `channel` (slack) or
`url` (teams, google_chat): the delivery's other keys (token, title, preview rows...) stay the
report's. A driver with a recipients column must give every row a target for each method the
report delivers by, so no audience's file falls back to the delivery's own channel (which would
show it to everyone there); one target per chat method. A driver without the column leaves chat
deliveries their own target, as it does webhooks and file shares.

A webhook URL's query holds its credential (Teams' `sig`, Google Chat's `key` and `token`): what
is shown of a target (`shown`, the dry run, the API, the ledger) leaves the query out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reporthubd import domain
from reporthubd.deliverers.common import url_target

M = domain.DeliveryMethod

CHAT = {"slack": M.SLACK, "teams": M.TEAMS, "google_chat": M.GOOGLE_CHAT}
"""An entry's prefix → the delivery method it addresses."""
KEY_OF = {M.SLACK: "channel", M.TEAMS: "url", M.GOOGLE_CHAT: "url"}
"""The delivery_config key an audience's chat target replaces."""


class TargetProblem(ValueError):
    """An entry that names no usable target; the message says why (the caller adds the row)."""


@dataclass(frozen=True)
class Targets:
    emails: tuple[str, ...] = ()
    chat: tuple[tuple[domain.DeliveryMethod, str], ...] = ()

    def chat_target(self, method: domain.DeliveryMethod) -> str | None:
        return next((target for m, target in self.chat if m is method), None)


def parse(entries: Iterable[str]) -> Targets:
    """An audience's entries as addresses and chat targets; raises TargetProblem."""
    emails: list[str] = []
    chat: dict[domain.DeliveryMethod, str] = {}
    for entry in entries:
        prefix, sep, rest = entry.partition(":")
        method = CHAT.get(prefix.strip().lower()) if sep else None
        if method is None:
            address = rest.strip() if sep and prefix.strip().lower() == "email" else entry
            if "@" not in address or address.startswith("@") or address.endswith("@"):
                raise TargetProblem(
                    f"{entry!r} is not an e-mail address nor a chat target "
                    f"({', '.join(f'{p}:...' for p in CHAT)})"
                )
            emails.append(address)
            continue
        target = rest.strip()
        if method is M.SLACK:
            if not target or any(c.isspace() for c in target) or target.startswith("http"):
                raise TargetProblem(f"{entry!r}: a slack target is a channel ID, e.g. slack:C0123")
        elif not target.startswith(("https://", "http://")):
            raise TargetProblem(f"{entry!r}: a {prefix} target is a webhook URL (https://...)")
        if method in chat and chat[method] != target:
            raise TargetProblem(f"more than one {prefix} target (one per chat method)")
        chat[method] = target
    return Targets(emails=tuple(emails), chat=tuple(chat.items()))


def missing(targets: Targets, methods: Iterable[domain.DeliveryMethod]) -> list[str]:
    """The chat methods among `methods` that `targets` names nothing for."""
    return sorted({m.value for m in methods if m in KEY_OF and targets.chat_target(m) is None})


def chat_methods(deliveries: Sequence[domain.Delivery]) -> set[domain.DeliveryMethod]:
    return {d.method for d in deliveries if d.method in KEY_OF}


def addressed(delivery: domain.Delivery, targets: Targets) -> domain.Delivery:
    """`delivery` sent to the audience's chat target of its method (unchanged without one)."""
    target = targets.chat_target(delivery.method)
    key = KEY_OF.get(delivery.method)
    if target is None or key is None:
        return delivery
    return dataclasses.replace(delivery, delivery_config={**delivery.delivery_config, key: target})


def shown(entry: str) -> str:
    """An entry as the dry run, the API and logs show it: a webhook URL without its query."""
    prefix, sep, rest = entry.partition(":")
    method = CHAT.get(prefix.strip().lower()) if sep else None
    if method is None or method is M.SLACK:
        return entry
    return f"{prefix}:{url_target(rest.strip())}"
