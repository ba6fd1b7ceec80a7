"""The ingress's OpenAPI document, served at /openapi.json (schemathesis runs against it)."""

from __future__ import annotations

from typing import Any

from dam_ingress.validation import ChatRequest

ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type", "code"],
    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                   "code": {"type": "string"}, "param": {"type": ["string", "null"]}}}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _chat_operation() -> dict[str, Any]:
    return {
        "summary": "OpenAI-compatible chat completion, admitted by the dam",
        "operationId": "createChatCompletion",
        "parameters": [
            {"name": "Prefer", "in": "header", "required": False,
             "schema": {"type": "string", "enum": ["respond-async"]}},
            {"name": "Idempotency-Key", "in": "header", "required": False,
             "schema": {"type": "string", "minLength": 1, "maxLength": 255}},
        ],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/ChatRequest"}}}},
        "responses": {
            "200": {"description": "The completion (or server-sent events when stream=true)",
                    "content": {"application/json": {"schema": {"type": "object"}},
                                "text/event-stream": {"schema": {"type": "string"}}}},
            "202": {"description": "Queued; poll the Location",
                    "content": {"application/json": {"schema": {"type": "object"}}}},
            "400": _error("Invalid body"), "401": _error("Missing or unknown API key"),
            "408": _error("Body not received in time"), "413": _error("Body too large"),
            "429": _error("Over the client's rate"), "502": _error("The backend kept failing"),
            "503": _error("Backlog full or queue unreachable"),
            "504": _error("Deadline passed before dispatch"),
        },
    }


def _request_operation() -> dict[str, Any]:
    return {
        "summary": "State of an admitted request",
        "operationId": "getRequest",
        "parameters": [{"name": "rid", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "responses": {"200": {"description": "queued / running / completed / failed / expired",
                              "content": {"application/json": {"schema": {"type": "object"}}}},
                      "400": _error("Not a request id"), "404": _error("Unknown request"),
                      "503": _error("Queue unreachable")},
    }


def _probe(summary: str) -> dict[str, Any]:
    return {"get": {"summary": summary, "responses": {
        "200": {"description": "OK", "content": {"application/json": {"schema": {}}}},
        "503": {"description": "Not ready", "content": {"application/json": {"schema": {}}}}}}}


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 description of every route of the ingress."""
    chat_schema = ChatRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = chat_schema.pop("$defs", {})
    return {
        "openapi": "3.1.0",
        "info": {"title": "Traffic Dam ingress", "version": "0.1.0"},
        "paths": {
            "/v1/chat/completions": {"post": _chat_operation()},
            "/v1/requests/{rid}": {"get": _request_operation()},
            "/healthz": _probe("Process alive"),
            "/readyz": _probe("Redis reachable and scripts loaded"),
        },
        "components": {"schemas": {"ChatRequest": chat_schema, "Error": ERROR, **defs}},
    }
