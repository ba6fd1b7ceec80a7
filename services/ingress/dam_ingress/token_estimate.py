"""How many LLM tokens a request may cost, known before the backend has seen it.

Admission reserves this much of the tenant's token budget; the worker settles the difference
with the usage the backend reports. A character count is a deliberately cheap estimate
(about 4 characters a token for English under common tokenizers): running a tokenizer on
the ingress hot path would cost more than the reservation is worth, and the settlement
corrects any error.
"""

from __future__ import annotations

from typing import Any

from dam_ingress.validation import ChatRequest

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4  # role and framing, as chat templates add


def estimate_prompt_tokens(chat: ChatRequest) -> int:
    """Estimated prompt tokens of a chat request."""
    chars = 0
    for message in chat.messages:
        chars += _content_chars(message.content)
    return len(chat.messages) * TOKENS_PER_MESSAGE + -(-chars // CHARS_PER_TOKEN)


def reserved_tokens(chat: ChatRequest, default_max_tokens: int) -> int:
    """Tokens to reserve: estimated prompt plus the most the completion may use."""
    completion = chat.max_completion_tokens or chat.max_tokens or default_max_tokens
    return estimate_prompt_tokens(chat) + completion


def _content_chars(content: str | list[dict[str, Any]] | None) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return len(content)
    return sum(len(part["text"]) for part in content if isinstance(part.get("text"), str))
