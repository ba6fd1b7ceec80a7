"""The chat request as the dam accepts it: OpenAI-compatible, checked before admission."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dam_common.scripts import PRIORITY_LEVELS

PRIORITY_HEADER = "x-dam-priority"


class Message(BaseModel):
    """One chat message; content may be text or a list of content parts."""

    model_config = ConfigDict(extra="allow", strict=True)
    role: Literal["system", "user", "assistant", "tool", "developer", "function"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """The fields the dam relies on; other OpenAI fields pass through to the backend."""

    model_config = ConfigDict(extra="allow", strict=True)
    model: str = Field(min_length=1, max_length=256)
    messages: list[Message] = Field(min_length=1, max_length=4096)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    metadata: dict[str, Any] | None = None


class InvalidRequest(Exception):
    """A body the dam refuses; `code` is the OpenAI-style error code."""

    def __init__(self, message: str, code: str, param: str | None = None,
                 status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.param = param
        self.status = status


def idempotency_digest(header: str | None) -> str:
    """SHA-256 of an Idempotency-Key header ('' without one); 1-255 printable ASCII."""
    if header is None:
        return ""
    if not 0 < len(header) <= 255 or not header.isascii() or not header.isprintable():
        raise InvalidRequest("Idempotency-Key must be 1 to 255 printable ASCII characters",
                             "invalid_idempotency_key", "Idempotency-Key")
    return hashlib.sha256(header.encode()).hexdigest()


def parse_chat_request(raw: bytes, max_tokens_cap: int) -> tuple[ChatRequest, bytes]:
    """Validate a body; returns the model and the canonical JSON that enters the stream."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}", "invalid_json") from None
    if not isinstance(doc, dict):
        raise InvalidRequest("request body must be a JSON object", "invalid_body")
    try:
        req = ChatRequest.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidRequest(f"{where}: {first['msg']}", "invalid_body", where) from None
    for name in ("max_tokens", "max_completion_tokens"):
        value = getattr(req, name)
        if value is not None and value > max_tokens_cap:
            raise InvalidRequest(f"{name} is {value}, above this service's cap of "
                                 f"{max_tokens_cap}", "max_tokens_too_large", name)
    return req, orjson.dumps(doc)


def requested_priority(headers: Mapping[str, str], chat: ChatRequest) -> int | None:
    """The priority a request asks for: the x-dam-priority header, else metadata.priority.

    0 is the default, higher is served first within the tenant; the tier bounds it.
    """
    raw = headers.get(PRIORITY_HEADER)
    where = PRIORITY_HEADER
    if raw is None and chat.metadata is not None and "priority" in chat.metadata:
        raw, where = chat.metadata["priority"], "metadata.priority"
    if raw is None:
        return None
    text = str(raw).strip() if not isinstance(raw, bool) else ""
    if not text.isdigit() or int(text) >= PRIORITY_LEVELS:
        raise InvalidRequest(f"{where} must be an integer from 0 to {PRIORITY_LEVELS - 1}",
                             "invalid_priority", where)
    return int(text)
