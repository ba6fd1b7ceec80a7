"""The OpenAI-compatible backend, as the worker calls it: one try per call, errors classified."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson

from dam_common.errors import PermanentBackendError, TransientBackendError
from dam_worker.metrics import TTFT_SECONDS


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class LLMBackend:
    """POST {base_url}/chat/completions through one pooled aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, api_key: str,
                 model_map: dict[str, str]) -> None:
        self._session = session
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._model_map = model_map

    def _payload(self, body: dict[str, Any], stream: bool) -> bytes:
        doc = dict(body)
        doc["model"] = self._model_map.get(str(doc.get("model", "")), doc.get("model"))
        doc["stream"] = stream
        return orjson.dumps(doc)

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """A non-streamed completion."""
        try:
            async with self._session.post(self._url, data=self._payload(body, False),
                                          headers=self._headers) as resp:
                await _raise_for_status(resp)
                doc = orjson.loads(await resp.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientBackendError(
                f"backend unreachable: {type(exc).__name__} {exc}") from exc
        except orjson.JSONDecodeError as exc:
            raise PermanentBackendError(f"backend answered invalid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise PermanentBackendError("backend answered a non-object")
        return doc

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[str]:
        """Chunks of a streamed completion, as the JSON text of each `data:` line."""
        started = time.perf_counter()
        first = True
        try:
            async with self._session.post(self._url, data=self._payload(body, True),
                                          headers=self._headers) as resp:
                await _raise_for_status(resp)
                async for raw in resp.content:
                    line = raw.strip()
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        return
                    if first:
                        TTFT_SECONDS.observe(time.perf_counter() - started)
                        first = False
                    yield data.decode()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientBackendError(
                f"backend stream broke: {type(exc).__name__} {exc}") from exc


async def _raise_for_status(resp: aiohttp.ClientResponse) -> None:
    if resp.status < 400:
        return
    text = (await resp.text(errors="replace"))[:500]
    message = f"backend answered {resp.status}: {text}"
    if resp.status == 429 or resp.status >= 500:
        raise TransientBackendError(message, status=resp.status,
                                    retry_after_s=parse_retry_after(resp.headers.get("Retry-After")))
    raise PermanentBackendError(message, status=resp.status)
