"""schemathesis against the ingress's own OpenAPI document: no 5xx, whatever it sends."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.stack import DamStack, get_json

pytestmark = pytest.mark.e2e


def test_openapi_document_describes_the_routes(stack: DamStack) -> None:
    ingress = stack.ingress()
    doc = get_json(f"{ingress.url}/openapi.json")
    assert set(doc["paths"]) == {"/v1/chat/completions", "/v1/requests/{rid}", "/healthz",
                                 "/readyz"}
    assert "messages" in doc["components"]["schemas"]["ChatRequest"]["required"]


def test_schemathesis_finds_no_server_error(stack: DamStack) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st is not None, "schemathesis is a dev dependency: make test installs it"
    mock = stack.mock_llm("--ttft-ms", "5", "--tokens", "2")
    ingress = stack.ingress(DAM_ANON_RATE="100000", DAM_ANON_BURST="100000",
                            DAM_BACKLOG_CAP="100000", DAM_WAIT_TIMEOUT_S="5")
    stack.dispatcher(DAM_DISPATCH_RATE="0")
    stack.worker(mock, DAM_WORKER_CAPACITY="8")
    run = subprocess.run(
        [st, "run", f"{ingress.url}/openapi.json", "--checks", "not_a_server_error",
         "--max-examples", "40", "--request-timeout", "15", "--seed", "1"],
        capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
