"""Field names of stream entries and reply messages: the wire format between services."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Field(StrEnum):
    """Fields of an intake / work / dead-letter entry."""

    RID = "rid"  # request id: the intake id it was admitted under
    BODY = "body"  # the validated chat request, JSON
    INGRESS = "ingress"  # id of the ingress whose reply stream waits for the answer
    CLIENT = "client"  # identity the request was admitted for
    STREAM = "stream"  # "1" when the client asked for server-sent events
    DEADLINE_MS = "deadline_ms"  # not dispatched after this (epoch ms): ends as expired
    ACCEPTED_MS = "accepted_ms"  # set by admit_request.lua from the server clock
    TENANT = "tenant"  # the tenant whose queue it waited in (set by admit_request.lua)
    PRIORITY = "prio"  # its priority within the tenant
    COST = "cost"  # tokens reserved from the tenant's budget at admission
    TOKENS_PER_MINUTE = "tpm"  # the tenant's budget at admission (absent: no budget)
    DELIVERIES = "deliveries"  # deliveries before the current work entry
    LAST_ERROR = "last_error"


class ReplyKind(StrEnum):
    """Messages on an ingress's reply stream."""

    CHUNK = "chunk"  # one streamed chunk (OpenAI chat.completion.chunk JSON)
    COMPLETED = "completed"  # terminal: data is the completion JSON
    FAILED = "failed"  # terminal: data is the last error
    EXPIRED = "expired"  # terminal: deadline passed before dispatch


TERMINAL_KINDS = frozenset({ReplyKind.COMPLETED, ReplyKind.FAILED, ReplyKind.EXPIRED})


@dataclass(frozen=True, slots=True)
class WorkItem:
    """A work entry as a worker handles it."""

    entry_id: str
    rid: str
    body: bytes
    ingress: str
    stream: bool
    accepted_ms: int
    client: str = ""
    tenant: str = ""
    reserved_tokens: int = 0
    tokens_per_minute: int = 0

    @classmethod
    def from_fields(cls, entry_id: str, fields: dict[str, str]) -> WorkItem:
        """Decode a work entry's fields."""
        return cls(
            entry_id=entry_id,
            rid=fields.get(Field.RID, entry_id),
            body=fields.get(Field.BODY, "{}").encode(),
            ingress=fields.get(Field.INGRESS, ""),
            stream=fields.get(Field.STREAM) == "1",
            accepted_ms=int(fields.get(Field.ACCEPTED_MS, "0") or 0),
            client=fields.get(Field.CLIENT, ""),
            tenant=fields.get(Field.TENANT, ""),
            reserved_tokens=int(fields.get(Field.COST, "0") or 0),
            tokens_per_minute=int(fields.get(Field.TOKENS_PER_MINUTE, "0") or 0),
        )


def stream_entries(resp: Any) -> list[tuple[str, dict[str, str]]]:
    """Flatten an XREAD / XREADGROUP reply (decoded) into (entry id, fields) pairs."""
    return [(entry_id, fields or {}) for _, entries in resp or () for entry_id, fields in entries]
