"""managerd/trace.py: traceparent parsing, spans and their file, the runtime's context,
and the gRPC server interceptor on a real (in-process) gRPC server."""

from __future__ import annotations

import json
import os
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from dockyard.managerd import trace

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TP = f"00-{TRACE_ID}-{PARENT}-01"


def spans(directory: Path, trace_id: str = TRACE_ID) -> list[dict]:
    path = directory / f"{trace_id}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("value, expected", [
    (TP, (TRACE_ID, PARENT)),
    (TP.upper(), (TRACE_ID, PARENT)),
    (f" {TP} ", (TRACE_ID, PARENT)),
    (None, None), ("", None), ("garbage", None),
    (f"01-{TRACE_ID}-{PARENT}-01", None),  # unknown version
    (f"00-{'0' * 32}-{PARENT}-01", None),  # all-zero ids are invalid (W3C)
    (f"00-{TRACE_ID}-{'0' * 16}-01", None),
    (f"00-{TRACE_ID[:-1]}-{PARENT}-01", None),
])
def test_parse_traceparent(value, expected):
    assert trace.parse_traceparent(value) == expected


def test_span_is_a_noop_without_a_traced_call(tmp_path):
    assert trace.current() is None
    with trace.span("x") as s:
        assert s is None
    assert trace.runtime_env() == {}
    assert trace.env_argv("create", "c1") == []
    with trace.runtime_call("start", "c1") as env:
        assert env is None  # the runtime inherits managerd's environment
    assert not any(tmp_path.iterdir())


def test_spans_nest_and_land_in_one_file(tmp_path):
    tracer = trace.Tracer(str(tmp_path / "trace"))
    root = tracer.start(TP, "grpc Tasks.Create", namespace="ns1")
    token = trace._current.set(root)
    try:
        with trace.span("outer", n=1) as outer:
            assert trace.current() is outer
            with trace.span("inner"):
                pass
            with pytest.raises(ValueError), trace.span("failing"):
                raise ValueError("boom")
        assert trace.current() is root
    finally:
        trace._current.reset(token)
    root.end()
    got = {s["name"]: s for s in spans(tmp_path / "trace")}
    assert set(got) == {"grpc Tasks.Create", "outer", "inner", "failing"}
    assert got["grpc Tasks.Create"]["parent_id"] == PARENT
    assert got["outer"]["parent_id"] == got["grpc Tasks.Create"]["span_id"]
    assert got["inner"]["parent_id"] == got["failing"]["parent_id"] == got["outer"]["span_id"]
    assert got["failing"]["attrs"]["error"] == "ValueError: boom"
    for s in got.values():
        assert s["trace_id"] == TRACE_ID and s["service"] == "managerd"
        assert len(s["span_id"]) == 16 and s["duration"] >= 0 and s["start"] > 0
    assert got["outer"]["attrs"] == {"n": 1}
    assert got["grpc Tasks.Create"]["attrs"] == {"namespace": "ns1"}
    assert os.stat(tmp_path / "trace" / f"{TRACE_ID}.jsonl").st_mode & 0o777 == 0o600


def test_runtime_context_names_the_runtime_span(tmp_path):
    tracer = trace.Tracer(str(tmp_path))
    root = tracer.start(TP, "grpc Tasks.Start")
    token = trace._current.set(root)
    try:
        assert trace.runtime_env() == {"TRACEPARENT": root.traceparent(),
                                       "DOCKYARD_TRACE_DIR": str(tmp_path)}
        words = trace.env_argv("create", "c1")  # the monitor runs it: ends with the call
        with trace.runtime_call("start", "c1") as env:
            assert env["PATH"] == os.environ["PATH"]  # the whole environment, plus ours
            runtime_tp = env["TRACEPARENT"]
            assert env["DOCKYARD_TRACE_DIR"] == str(tmp_path)
    finally:
        trace._current.reset(token)
    (runtime_span,) = spans(tmp_path)
    assert runtime_span["name"] == "runtime start"
    assert runtime_span["attrs"] == {"container": "c1"}
    assert runtime_span["parent_id"] == root.span_id
    assert runtime_tp == f"00-{TRACE_ID}-{runtime_span['span_id']}-01"
    root.end()
    got = {s["name"]: s for s in spans(tmp_path)}
    create = got["runtime create"]
    assert words == [f"TRACEPARENT=00-{TRACE_ID}-{create['span_id']}-01",
                     f"DOCKYARD_TRACE_DIR={tmp_path}"]
    assert create["parent_id"] == root.span_id
    assert create["attrs"] == {"container": "c1", "via": "monitor"}
    call = got["grpc Tasks.Start"]
    assert create["start"] + create["duration"] == call["start"] + call["duration"]


def test_unwritable_directory_does_not_fail_the_call(tmp_path):
    (tmp_path / "file").write_text("")
    tracer = trace.Tracer(str(tmp_path / "file" / "trace"))  # a dir under a regular file
    s = tracer.start(TP, "x")
    s.end()  # logged, not raised


def test_method_name():
    assert trace._method_name("/dockyard.services.tasks.v1.Tasks/Create") == "Tasks.Create"
    assert trace._method_name("/grpc.health.v1.Health/Check") == "Health.Check"


# --- the interceptor on a real server --------------------------------------------

def _identity(b: bytes) -> bytes:
    return b


def _seen() -> bytes:
    cur = trace.current()
    return (cur.span_id if cur else "-").encode()


def _unary(request: bytes, context) -> bytes:
    if request == b"fail":
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    with trace.span("work"):
        pass
    return _seen()


def _stream(request: bytes, context):
    for _ in range(3):
        yield _seen()


@pytest.fixture
def server(tmp_path):
    tracer = trace.Tracer(str(tmp_path / "trace"))
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                      interceptors=[trace.TraceInterceptor(tracer)])
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary, _identity, _identity),
        "Stream": grpc.unary_stream_rpc_method_handler(_stream, _identity, _identity),
    }
    srv.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "dockyard.test.v1.Things", handlers)])
    sock = tmp_path / "s.sock"
    srv.add_insecure_port(f"unix:{sock}")
    srv.start()
    channel = grpc.insecure_channel(f"unix:{sock}")
    yield channel, tmp_path / "trace"
    channel.close()
    srv.stop(0).wait(5)


def _call(channel, method: str, body: bytes, md=()):
    if method == "Stream":
        stub = channel.unary_stream(f"/dockyard.test.v1.Things/{method}", _identity, _identity)
        return list(stub(body, metadata=md, timeout=10))
    stub = channel.unary_unary(f"/dockyard.test.v1.Things/{method}", _identity, _identity)
    return stub(body, metadata=md, timeout=10)


def test_interceptor_records_a_span_per_traced_call(server):
    channel, directory = server
    seen = _call(channel, "Unary", b"x", [("traceparent", TP), ("dockyard-namespace", "ns1")])
    got = {s["name"]: s for s in spans(directory)}
    assert set(got) == {"grpc Things.Unary", "work"}
    rpc = got["grpc Things.Unary"]
    assert rpc["parent_id"] == PARENT and rpc["service"] == "managerd"
    assert rpc["attrs"] == {"namespace": "ns1"}
    assert seen == rpc["span_id"].encode()  # the handler ran with its span current
    assert got["work"]["parent_id"] == rpc["span_id"]


def test_interceptor_streams_and_errors(server):
    channel, directory = server
    items = _call(channel, "Stream", b"", [("traceparent", TP)])
    with pytest.raises(grpc.RpcError) as err:
        _call(channel, "Unary", b"fail", [("traceparent", TP)])
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    got = {s["name"]: s for s in spans(directory)}
    stream = got["grpc Things.Stream"]
    assert items == [stream["span_id"].encode()] * 3  # current during every step
    assert "error" not in stream["attrs"]
    failed = got["grpc Things.Unary"]
    assert failed["attrs"]["grpc.status"] == "NOT_FOUND"
    assert "no such thing" in failed["attrs"]["error"]


def test_untraced_calls_record_nothing(server):
    channel, directory = server
    assert _call(channel, "Unary", b"x") == b"-"
    assert _call(channel, "Stream", b"") == [b"-"] * 3
    assert _call(channel, "Unary", b"x", [("traceparent", "00-bad-id-01")]) == b"-"
    assert not directory.exists()
