"""Span file retention (src/dockyard/tracefiles.py) and the daemons that run it.

The policy on a directory of span files (age, count, total size; other files
untouched), the flags' errors, and real apid and managerd processes sweeping
their trace directory at start and periodically.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from helpers.managerd import ManagerdProcess

from dockyard import tracefiles
from dockyard.tracefiles import Retention, prune

pytestmark = pytest.mark.timeout(60)


def span_file(d: Path, age: float, size: int = 10, now: float | None = None) -> str:
    name = f"{uuid.uuid4().hex}.jsonl"
    p = d / name
    p.write_bytes(b"x" * size)
    t = (now or time.time()) - age
    os.utime(p, (t, t))
    return name


@pytest.fixture
def tdir(tmp_path) -> Path:
    d = tmp_path / "trace"
    d.mkdir()
    return d


def test_trace_retention_by_age_keeps_other_files(tdir):
    now = time.time()
    old = span_file(tdir, 7200, now=now)
    fresh = span_file(tdir, 10, now=now)
    (tdir / "notes.txt").write_text("not a span file")
    (tdir / "ABCDEF.jsonl").write_text("not a trace id")
    os.symlink("/etc/passwd", tdir / f"{uuid.uuid4().hex}.jsonl")
    (tdir / f"{uuid.uuid4().hex}.jsonl.d").mkdir()
    assert prune(str(tdir), Retention(max_age=3600, max_files=0, max_bytes=0), now) == [old]
    left = set(os.listdir(tdir))
    assert fresh in left and old not in left and len(left) == 5
    assert os.path.exists("/etc/passwd")


def test_trace_retention_by_count_and_size_removes_the_oldest(tdir):
    now = time.time()
    names = [span_file(tdir, age, size=100, now=now) for age in (50, 40, 30, 20, 10)]
    removed = prune(str(tdir), Retention(max_age=0, max_files=3, max_bytes=0), now)
    assert sorted(removed) == sorted(names[:2])
    removed = prune(str(tdir), Retention(max_age=0, max_files=0, max_bytes=250), now)
    assert removed == [names[2]]
    assert sorted(os.listdir(tdir)) == sorted(names[3:])
    # nothing limited: nothing removed; a missing directory is not an error
    assert prune(str(tdir), Retention(0, 0, 0), now) == []
    assert prune(str(tdir / "missing"), Retention(), now) == []


def test_trace_retention_values_parse_with_clear_errors():
    assert tracefiles.parse_duration("90") == 90
    assert tracefiles.parse_duration("15m") == 900
    assert tracefiles.parse_duration("2h") == 7200
    assert tracefiles.parse_size("512k") == 512 << 10
    assert tracefiles.parse_size("0") == 0
    for bad in ("", "-1", "5x", "1.5.2h"):
        with pytest.raises(ValueError, match="invalid duration"):
            tracefiles.parse_duration(bad)
    for bad in ("1.5g", "lots", "-3"):
        with pytest.raises(ValueError, match="invalid size"):
            tracefiles.parse_size(bad)
    for argv in (["--trace-max-age", "soon"], ["--trace-max-files", "many"],
                 ["--trace-max-bytes", "1t"]):
        r = subprocess.run([sys.executable, "-m", "dockyard.apid", *argv],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and argv[0] in r.stderr and "invalid" in r.stderr, r.stderr


def test_trace_retention_sweeper_runs_at_start_and_periodically(tdir):
    old = span_file(tdir, 60)
    sweeper = tracefiles.Sweeper(str(tdir), Retention(max_age=2, max_files=0, max_bytes=0))
    sweeper.start()
    try:
        deadline = time.monotonic() + 5
        while (tdir / old).exists():
            assert time.monotonic() < deadline, "not swept at start"
            time.sleep(0.05)
        later = span_file(tdir, 0)
        time.sleep(0.5)
        assert (tdir / later).exists()  # fresh: kept
        deadline = time.monotonic() + 8
        while (tdir / later).exists():  # 2 s old after a while: removed by a later sweep
            assert time.monotonic() < deadline, "not swept periodically"
            time.sleep(0.1)
    finally:
        t0 = time.monotonic()
        sweeper.stop()
        assert time.monotonic() - t0 < 2, "stop() waited for the interval"


def test_trace_retention_in_managerd(tmp_path):
    trace = tmp_path / "m" / "trace"
    trace.mkdir(parents=True)
    old = span_file(trace, 7200)
    keep = span_file(trace, 0)
    (trace / "other.log").write_text("x")
    m = ManagerdProcess(tmp_path / "m", ["--trace-max-age", "20s"])
    m.start()
    try:
        assert not (trace / old).exists(), "not swept at start"
        assert (trace / keep).exists()
        later = span_file(trace, 3600)
        deadline = time.monotonic() + 15  # the sweep interval is a quarter of the age: 5 s
        while (trace / later).exists():
            assert time.monotonic() < deadline, m.log()
            time.sleep(0.1)
        assert (trace / "other.log").exists()
    finally:
        m.stop()


def test_trace_retention_in_apid(tmp_path):
    exec_root = tmp_path / "exec"
    trace = exec_root / "trace"
    trace.mkdir(parents=True)
    names = [span_file(trace, age) for age in (40, 30, 20, 10)]
    sock = tmp_path / "apid.sock"
    log = open(tmp_path / "apid.log", "wb")
    # no managerd behind it: apid serves anyway (and keeps trying to reach it)
    proc = subprocess.Popen([sys.executable, "-m", "dockyard.apid", "--data-root",
                             str(tmp_path / "data"), "--exec-root", str(exec_root),
                             "-H", f"unix://{sock}", "--managerd",
                             f"unix://{tmp_path}/no-managerd.sock",
                             "--trace-max-files", "2", "--trace-max-age", "0"],
                            stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        deadline = time.monotonic() + 20
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)),
                          base_url="http://apid") as c:
            while True:
                assert proc.poll() is None, (tmp_path / "apid.log").read_text()
                try:
                    if c.get("/_ping").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "apid.log").read_text()
                time.sleep(0.1)
        deadline = time.monotonic() + 5
        while sorted(os.listdir(trace)) != sorted(names[2:]):
            assert time.monotonic() < deadline, os.listdir(trace)
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
