"""shim/trace.py: the span file, nesting, forked children, the exec wait, the verb span,
and that an untraced shim never loads it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dockyard.shim import trace

REPO = Path(__file__).resolve().parents[2]
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
TP = f"00-{TRACE_ID}-{PARENT}-01"


@pytest.fixture(autouse=True)
def no_tracer():
    """Each test starts and ends with the process untraced."""
    trace.TRACER = None
    yield
    if trace.TRACER is not None:
        os.close(trace.TRACER.fd)
    trace.TRACER = None


def spans(directory: Path) -> list[dict]:
    path = directory / f"{TRACE_ID}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("value, ok", [
    (TP, True), (TP.upper(), True), ("", False), ("00-xyz", False),
    (f"00-{TRACE_ID}-{PARENT}", False), (f"ff-{TRACE_ID}-{PARENT}-01", False),
    (f"00-{TRACE_ID}-{'0' * 16}-01", False), (f"00-{'0' * 32}-{PARENT}-01", False),
    (f"00-{TRACE_ID[:-1]}g-{PARENT}-01", False),
])
def test_parse(value, ok):
    assert trace.parse(value) == ((TRACE_ID, PARENT) if ok else None)


def test_begin_end_nest_under_the_callers_span(tmp_path):
    t = trace.start(TP, str(tmp_path / "trace"))
    assert t is trace.TRACER
    verb = trace.begin("shim create", container="c1")
    step = trace.begin("cgroup create", path="/dockyard/c1")
    trace.end(step, version=2)
    trace.end(verb)
    got = {s["name"]: s for s in spans(tmp_path / "trace")}
    assert got["shim create"]["parent_id"] == PARENT
    assert got["cgroup create"]["parent_id"] == got["shim create"]["span_id"]
    assert got["cgroup create"]["attrs"] == {"path": "/dockyard/c1", "version": 2}
    for s in got.values():
        assert s["trace_id"] == TRACE_ID and s["service"] == "shim" and s["duration"] >= 0
    assert os.stat(tmp_path / "trace").st_mode & 0o777 == 0o700


def test_directory_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKYARD_TRACE_DIR", str(tmp_path / "d"))
    assert trace.start(TP) is not None
    trace.end(trace.begin("x"))
    assert [s["name"] for s in spans(tmp_path / "d")] == ["x"]


def test_no_tracer_means_no_spans(tmp_path):
    assert trace.begin("x") is None
    trace.end(None)
    trace.abort("whatever")
    assert trace.start("not-a-traceparent", str(tmp_path)) is None
    assert not (tmp_path / f"{TRACE_ID}.jsonl").exists()


def test_unopenable_file_runs_untraced(tmp_path, monkeypatch):
    (tmp_path / "f").write_text("")
    assert trace.start(TP, str(tmp_path / "f" / "trace")) is None
    monkeypatch.setenv("DOCKYARD_TRACE_DIR", str(tmp_path / "f" / "trace"))
    assert trace.run_verb(TP, "state", "c1", lambda: 7) == 7
    assert trace.TRACER is None


def test_ending_the_outer_span_writes_open_inner_ones_with_its_error(tmp_path):
    trace.start(TP, str(tmp_path))
    verb = trace.begin("shim create")
    trace.begin("init")
    trace.end(verb, error="container init exited during create")
    got = {s["name"]: s for s in spans(tmp_path)}
    assert got["init"]["attrs"]["error"] == "container init exited during create"
    assert got["init"]["parent_id"] == got["shim create"]["span_id"]
    assert trace.TRACER.stack == []


def test_a_forked_child_writes_its_own_spans_only(tmp_path):
    trace.start(TP, str(tmp_path))
    verb = trace.begin("shim create")
    init = trace.begin("init")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one finished step, one that fails
        try:
            trace.end(trace.begin("namespaces"), new="mount")
            trace.begin("mounts")
            trace.abort("mount proc: permission denied")
            os.write(w, b"k")
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"k"
    os.close(r)
    os.waitpid(pid, 0)
    trace.end(init)
    trace.end(verb)
    got = {s["name"]: s for s in spans(tmp_path)}
    assert sorted(got) == ["init", "mounts", "namespaces", "shim create"]  # each once
    assert got["namespaces"]["parent_id"] == got["mounts"]["parent_id"] == got["init"]["span_id"]
    assert got["mounts"]["attrs"]["error"] == "mount proc: permission denied"
    assert "error" not in got["init"]["attrs"]


def test_wait_exec_times_the_execve_by_end_of_file(tmp_path):
    trace.start(TP, str(tmp_path))
    verb = trace.begin("shim start")
    r, w = os.pipe()  # close-on-exec, like the init's fifo fd
    os.write(w, b"0")
    assert os.read(r, 1) == b"0"  # what start's fifo wait consumed
    pid = os.fork()
    if pid == 0:
        try:
            time.sleep(0.05)
            os.execv("/bin/sleep", ["sleep", "0.5"])  # closes w: end-of-file
        finally:
            os._exit(127)
    os.close(w)
    try:
        trace.wait_exec(r, pid, program="sleep")
    finally:
        os.close(r)
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    trace.end(verb)
    got = {s["name"]: s for s in spans(tmp_path)}
    assert got["exec"]["parent_id"] == got["shim start"]["span_id"]
    assert got["exec"]["attrs"] == {"program": "sleep", "pid": pid}
    assert got["exec"]["duration"] >= 40_000_000


def test_wait_exec_reports_a_failed_exec_and_a_timeout(tmp_path):
    trace.start(TP, str(tmp_path))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os._exit(127)  # dies without exec: still the shim's (here: pytest's) name
    os.close(w)
    try:
        trace.wait_exec(r, pid)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    r, w = os.pipe()
    trace.wait_exec(r, os.getpid(), timeout=0.05)  # the writer never goes away
    os.close(r)
    os.close(w)
    first, second = spans(tmp_path)
    assert "exec failed" in first["attrs"]["error"]
    assert "no exec seen" in second["attrs"]["error"]


def test_run_verb(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKYARD_TRACE_DIR", str(tmp_path))
    assert trace.run_verb(TP, "kill", "c1", lambda: 0) == 0
    trace.TRACER = None
    assert trace.run_verb(TP, "exec", "c1", lambda: 3) == 3

    def fail() -> int:
        raise FileNotFoundError(2, "No such file or directory", "/x/config.json")
    trace.TRACER = None
    with pytest.raises(FileNotFoundError):
        trace.run_verb(TP, "create", "", fail)
    kill, exec_, create = spans(tmp_path)
    assert (kill["name"], kill["parent_id"]) == ("shim kill", PARENT)
    assert kill["attrs"] == {"pid": os.getpid(), "container": "c1"}
    assert exec_["attrs"]["exit_code"] == 3
    assert create["attrs"]["error"] == "/x/config.json: No such file or directory"
    assert "container" not in create["attrs"]


def _shim_modules(tmp_path: Path, env: dict[str, str]) -> tuple[int, bool]:
    """Run the shim's `list` as the installed binary does (python -I -S); returns its exit
    code and whether dockyard.shim.trace was imported."""
    code = (f"import sys; sys.path.insert(0, {str(REPO / 'src')!r})\n"
            "from dockyard.shim.cli import _main\n"
            f"rc = _main(['--root', {str(tmp_path / 'root')!r}, 'list', '-q'])\n"
            "print(rc, 'dockyard.shim.trace' in sys.modules)")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], env=env, capture_output=True,
                         text=True, timeout=30, check=True).stdout.split()
    return int(out[0]), out[1] == "True"


def test_untraced_shim_never_loads_the_module(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TRACEPARENT", "DOCKYARD_TRACE_DIR")}
    assert _shim_modules(tmp_path, env) == (0, False)
    traced = dict(env, TRACEPARENT=TP, DOCKYARD_TRACE_DIR=str(tmp_path / "trace"))
    assert _shim_modules(tmp_path, traced) == (0, True)
    (verb,) = spans(tmp_path / "trace")
    assert verb["name"] == "shim list" and verb["parent_id"] == PARENT
