"""Shared set-up steps of the script tests."""

from __future__ import annotations

from dam_common.codes import AdmitCode
from dam_common.scripts import AdmitParams, LuaScripts

T0 = 1_700_000_000_000
OPEN = AdmitParams(1000, 1000, 0, 1, 10_000, 20_000, 60_000)


async def admit_n(scripts: LuaScripts, n: int, now_ms: int | None = T0, ingress: str = "i1",
                  deadline_ms: int = 60_000) -> list[str]:
    """Admit n requests from distinct clients; returns their request ids."""
    params = AdmitParams(1000, 1000, 0, 1, 10_000, 20_000, deadline_ms)
    rids = []
    for i in range(n):
        res = await scripts.admit(f"c{i}", params, {"body": "{}", "ingress": ingress,
                                                    "stream": "0"}, now_ms)
        assert res.code is AdmitCode.ADMITTED
        rids.append(res.rid)
    return rids
