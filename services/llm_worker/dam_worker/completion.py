"""Assemble a chat.completion from the chunks of a streamed one (what GET /v1/requests shows)."""

from __future__ import annotations

from typing import Any

import orjson


class StreamAssembler:
    """Collects content deltas, finish reason and usage from chat.completion.chunk objects."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._meta: dict[str, Any] = {}
        self._finish: str | None = None
        self._usage: Any = None

    def add(self, chunk_json: str) -> None:
        """Take one chunk; malformed ones are relayed to the client but not assembled."""
        try:
            chunk = orjson.loads(chunk_json)
        except orjson.JSONDecodeError:
            return
        if not isinstance(chunk, dict):
            return
        for key in ("id", "created", "model", "system_fingerprint"):
            if key in chunk and key not in self._meta:
                self._meta[key] = chunk[key]
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                self._parts.append(delta["content"])
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]

    def completion(self) -> dict[str, Any]:
        """The equivalent non-streamed completion."""
        doc: dict[str, Any] = {
            "id": self._meta.get("id", ""),
            "object": "chat.completion",
            "created": self._meta.get("created", 0),
            "model": self._meta.get("model", ""),
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "".join(self._parts)},
                "finish_reason": self._finish or "stop",
            }],
        }
        if self._usage is not None:
            doc["usage"] = self._usage
        return doc


def usage_tokens(completion: dict[str, Any]) -> int | None:
    """Tokens the backend says a completion used (prompt + completion); None if unreported."""
    usage = completion.get("usage")
    if not isinstance(usage, dict):
        return None
    total = usage.get("total_tokens")
    if isinstance(total, int):
        return total
    parts = [usage.get("prompt_tokens"), usage.get("completion_tokens")]
    if all(isinstance(p, int) for p in parts):
        return int(parts[0]) + int(parts[1])  # type: ignore[arg-type]
    return None
