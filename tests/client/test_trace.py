"""--trace: the traceparent header on every request of the command, then the span tree."""

from __future__ import annotations

import re

import httpx
from dockyard.client.trace import render_tree

from .test_commands import Router, run

SPANS = [
    {"span_id": "b" * 16, "parent_id": "", "name": "POST /containers/web/stop",
     "service": "apid", "start": 1_000_000, "duration": 9_000_000,
     "attrs": {"http.method": "POST", "http.status": 204}},
    {"span_id": "c" * 16, "parent_id": "b" * 16, "name": "grpc Tasks.Kill",
     "service": "managerd", "start": 2_000_000, "duration": 3_000_000, "attrs": {}},
    {"span_id": "d" * 16, "parent_id": "c" * 16, "name": "shim kill", "service": "shim",
     "start": 2_500_000, "duration": 1_000_000, "attrs": {"signal": "SIGTERM"}},
]


def test_render_tree_nests_children_with_times():
    lines = render_tree(SPANS).splitlines()
    assert lines[0].split()[:2] == ["9.0", "ms"] and lines[0].endswith(
        "apid: POST /containers/web/stop  [http.status=204]")
    assert lines[1].endswith("└─ managerd: grpc Tasks.Kill")
    assert lines[2].endswith("   └─ shim: shim kill  [signal=SIGTERM]")
    assert "+    1.5" in lines[2]  # offsets count from the first span


def test_trace_flag_sends_traceparent_and_prints_the_tree():
    seen: dict[str, str | None] = {}

    def stop(req: httpx.Request) -> httpx.Response:
        seen["stop"] = req.headers.get("traceparent")
        return httpx.Response(204)

    def traces(req: httpx.Request) -> httpx.Response:
        seen["fetch"] = req.headers.get("traceparent")
        trace_id = req.url.path.rsplit("/", 1)[-1]
        parent = seen["stop"].split("-")[2]
        spans = [dict(s, trace_id=trace_id) for s in SPANS]
        spans[0]["parent_id"] = parent
        return httpx.Response(200, json=spans)

    router = Router({"POST /containers/web/stop": stop})

    def route(req: httpx.Request) -> httpx.Response:
        if req.url.path.startswith("/v1/traces/"):
            return traces(req)
        return router(req)

    code, out, err = run(_Wrap(route), "stop", "--trace", "web")
    assert code == 0 and out == "web\n"
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", seen["stop"] or "")
    assert seen["fetch"] is None  # the fetch itself is not traced
    trace_id = seen["stop"].split("-")[1]
    assert f"trace {trace_id}" in err
    lines = [line for line in err.splitlines() if " ms " in line]
    assert lines[0].endswith("cli: dockyard stop")
    assert lines[1].endswith("├─ apid: POST /containers/web/stop  [http.status=204]") or \
        lines[1].endswith("└─ apid: POST /containers/web/stop  [http.status=204]")
    assert lines[3].endswith("shim: shim kill  [signal=SIGTERM]")


class _Wrap:
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, req):
        return self.fn(req)


def test_trace_without_engine_support_says_so():
    router = Router({"POST /containers/web/start": (204, None)})
    code, _, err = run(router, "--trace", "start", "web")
    assert code == 0 and "recorded no spans" in err
