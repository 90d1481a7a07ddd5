"""curl on the native /v1/ prefix and raw HTTP edge cases."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(60)]


def curl(stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--unix-socket", str(stack.apid.socket), *args],
                          capture_output=True, timeout=30)


def test_native_routes_with_curl(stack, busybox, name):
    assert curl(stack, "http://d/v1/_ping").stdout == b"OK"
    v = json.loads(curl(stack, "http://d/v1/version").stdout)
    assert v["ApiVersion"] == "1.51"
    body = json.dumps({"Image": busybox, "Cmd": ["echo", "native"]})
    r = curl(stack, "-X", "POST", "-H", "Content-Type: application/json", "-d", body,
             f"http://d/v1/containers/create?name={name}")
    cid = json.loads(r.stdout)["Id"]
    listed = json.loads(curl(stack, "http://d/v1/containers/json?all=1").stdout)
    assert any(c["Id"] == cid for c in listed)
    r = curl(stack, "-X", "DELETE", "-o", "/dev/null", "-w", "%{http_code}",
             f"http://d/v1/containers/{cid}")
    assert r.stdout == b"204"


def test_bad_requests_are_400_json(stack):
    r = curl(stack, "-X", "POST", "-H", "Content-Type: application/json", "-d", "{oops",
             "-w", "\n%{http_code}", "http://d/v1.41/containers/create")
    body, code = r.stdout.rsplit(b"\n", 1)
    assert code == b"400" and "message" in json.loads(body)
    r = curl(stack, "-X", "POST", "-H", "Content-Type: application/json",
             "-d", json.dumps({"Image": "x", "Cmd": 5}), "-w", "\n%{http_code}",
             "http://d/v1.41/containers/create")
    body, code = r.stdout.rsplit(b"\n", 1)
    assert code == b"400" and "Traceback" not in body.decode()
    r = curl(stack, "-w", "\n%{http_code}", "http://d/v1.41/containers/nope/json")
    body, code = r.stdout.rsplit(b"\n", 1)
    assert code == b"404" and json.loads(body) == {"message": "No such container: nope"}


def test_trace_spans_cover_grpc_calls(stack, busybox):
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    body = json.dumps({"Image": busybox, "Cmd": ["true"]})
    r = curl(stack, "-X", "POST", "-H", "Content-Type: application/json", "-H",
             f"traceparent: 00-{trace_id}-b7ad6b7169203331-01", "-d", body,
             "http://d/v1/containers/create")
    cid = json.loads(r.stdout)["Id"]
    spans = json.loads(curl(stack, f"http://d/v1/traces/{trace_id}").stdout)
    root = [s for s in spans if s["name"] == "POST /containers/create"]
    assert root and root[0]["parent_id"] == "b7ad6b7169203331"
    grpc_spans = [s for s in spans if s["name"].startswith("grpc ") and s["service"] == "apid"]
    assert grpc_spans and all(s["parent_id"] == root[0]["span_id"] for s in grpc_spans)
    # a traced start reaches managerd and the runtime: their spans land in the same file
    r = curl(stack, "-X", "POST", "-H", f"traceparent: 00-{trace_id}-b7ad6b7169203331-01",
             f"http://d/v1/containers/{cid}/start")
    # the start's background calls (Tasks.Wait) may still be open: a span is written
    # when it ends, so a managerd span can precede its apid parent for a moment
    deadline = time.monotonic() + 10
    while True:
        spans = json.loads(curl(stack, f"http://d/v1/traces/{trace_id}").stdout)
        ids = {s["span_id"] for s in spans}
        linked = all(s["parent_id"] in ids or s["parent_id"] == "b7ad6b7169203331"
                     for s in spans)
        if linked or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    services = {s["service"] for s in spans}
    assert "apid" in services and "managerd" in services, services
    assert linked, spans
    curl(stack, "-X", "DELETE", f"http://d/v1/containers/{cid}?force=1")
