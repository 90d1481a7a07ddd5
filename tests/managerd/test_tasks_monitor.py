"""The per-task monitor and the runtime wrapper on their own (no managerd): json-file
records, frames, the runtime's argv and error mapping, and a real monitor driving runc
or dockyard-shim on a busybox bundle (long lines, invalid UTF-8, outliving its parent,
memory)."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid

import pytest
from dockyard.managerd.monitor import _process as wire
from dockyard.managerd.monitor import client as mc
from dockyard.managerd.runtime import shim as rt
from helpers import busybox

from dockyard import errdefs

pytestmark = pytest.mark.timeout(60)


def test_log_record_matches_docker_json_file():
    rec = wire.log_record(b'say "hi"\t\\ \x01 \xff caf\xc3\xa9\n', "stdout", 1_700_000_000_123_456_789)
    parsed = json.loads(rec)
    assert parsed == {"log": 'say "hi"\t\\ \x01 \ufffd café\n', "stream": "stdout",
                      "time": "2023-11-14T22:13:20.123456789Z"}
    assert rec.endswith(b"}\n") and rec.count(b"\n") == 1


def test_frames_roundtrip():
    buf = bytearray(wire.frame(wire.REQ, wire.pack("attach", "", "ioe")) +
                    wire.frame(wire.STDIN, b"x" * 70000) + wire.frame(wire.END)[:3])
    frames = wire.take_frames(buf)
    assert [(k, len(p)) for k, p in frames] == [(wire.REQ, 11), (wire.STDIN, 70000)]
    assert wire.unpack(frames[0][1]) == ["attach", "", "ioe"]
    assert len(buf) == 3  # the partial frame stays


def test_runtime_argv_is_go_runc_shaped(tmp_path):
    r = rt.Runtime("/usr/sbin/runc", "/run/x/runtime/ns", str(tmp_path))
    log = str(tmp_path / "log.json")
    assert r.create_argv("c1", "/b/init.pid") == [
        "/usr/sbin/runc", "--root", "/run/x/runtime/ns", "--log", log, "--log-format", "json",
        "create", "--bundle", str(tmp_path), "--pid-file", "/b/init.pid", "c1"]
    assert r.exec_argv("c1", "/b/p.json", "/b/e.pid")[7:] == [
        "exec", "--process", "/b/p.json", "--detach", "--pid-file", "/b/e.pid", "c1"]


def test_runtime_errors_come_from_log_json(tmp_path):
    r = rt.Runtime(shutil.which("runc") or pytest.skip("no runc"), str(tmp_path / "root"),
                   str(tmp_path))
    with pytest.raises(errdefs.NotFound, match="container does not exist"):
        r.state("dy-nothing")
    with pytest.raises(errdefs.NotFound, match="no such executable"):
        rt.resolve_binary("/no/such/runtime")
    (tmp_path / "log.json").write_text(
        '{"level":"info","msg":"x"}\n{"level":"error","msg":"exec: \\"/x\\": stat /x: '
        'no such file or directory"}\nnot json\n')
    assert rt.last_error(str(tmp_path / "log.json")).endswith("no such file or directory")
    err = rt.error_for("exec", "c1", "permission denied")
    assert isinstance(err, errdefs.EngineError) and "permission denied" in str(err)


@pytest.fixture(params=["runc", "shim"])
def runtime_bin(request, runc_bin, shim_bin):
    return runc_bin if request.param == "runc" else shim_bin


@pytest.fixture
def supervise(tmp_path_factory):
    """supervise(runtime, args, log=True, stdin=False, **process) -> (runtime, cid, path,
    handshake): a busybox bundle and its monitor; the container and the monitor are
    removed after the test whatever happened."""
    made: list[tuple[rt.Runtime, str, str, mc.Handshake]] = []

    def start(runtime_bin, args, log=True, stdin=False, rotate=(0, 1), **process):
        base = tmp_path_factory.mktemp("mon")
        cid = f"dy-{uuid.uuid4().hex[:10]}"
        path = base / cid
        cfg = busybox.base_config(args, **process)
        cfg["root"]["path"] = str(path / "rootfs")
        busybox.make_bundle(path, cfg)
        r = rt.Runtime(runtime_bin, f"{base}/root", str(path))
        hs = mc.spawn(str(path), r.create_argv(cid, f"{path}/init.pid"), f"{path}/init.pid",
                      f"{base}/log.json" if log else "", stdin=stdin,
                      log_max_size=rotate[0], log_max_files=rotate[1])
        made.append((r, cid, str(path), hs))
        return r, cid, str(path), hs

    yield start
    for r, cid, path, hs in made:
        try:
            r.delete(cid, force=True)
        except errdefs.EngineError:
            pass
        if hs.popen is None:
            continue
        client = mc.MonitorClient(path)
        deadline = time.monotonic() + 5
        try:
            while client.state()[""].status is None and time.monotonic() < deadline:
                time.sleep(0.02)
            client.shutdown(force=True)
        except errdefs.EngineError:
            pass
        try:
            hs.popen.wait(5)
        except Exception:
            hs.popen.kill()
            hs.popen.wait()


@pytest.mark.privileged
def test_monitor_splits_long_lines_and_outlives_its_parent(supervise, runtime_bin):
    r, cid, path, hs = supervise(runtime_bin, [
        "sh", "-c", "i=0; while [ $i -lt 2000 ]; do printf 0123456789; i=$((i+1)); done; "
        "echo; printf tail"])
    assert hs.ok, hs.message
    log = os.path.join(os.path.dirname(path), "log.json")
    with open(f"/proc/{hs.monitor_pid}/stat") as f:  # own session, not in ours
        assert int(f.read().rsplit(")", 1)[1].split()[3]) == hs.monitor_pid
    r.start(cid)
    client = mc.MonitorClient(path)
    sub, buf = client.subscribe()
    sub.settimeout(15)
    kind, payload = mc._recv_frame(sub, buf)
    assert kind == wire.EVENT and wire.unpack(payload)[:4] == ["exit", "", str(hs.pid), "0"]
    sub.close()
    deadline = time.monotonic() + 5
    while '"log":"tail"' not in open(log).read() and time.monotonic() < deadline:
        time.sleep(0.02)  # the monitor flushes the unterminated "tail" at EOF
    recs = [json.loads(x) for x in open(log)]
    assert [len(x["log"]) for x in recs] == [16384, 3616 + 1, 4]
    assert recs[1]["log"].endswith("\n") and recs[2]["log"] == "tail"
    # the exit file follows the event (subscribers hear of the exit first)
    while mc.read_exit_file(path) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert mc.read_exit_file(path)[0] == 0
    r.delete(cid)
    client.shutdown()
    hs.popen.wait(5)
    assert not os.path.exists(f"{path}/monitor.sock")


@pytest.mark.privileged
def test_monitor_memory_is_small(supervise, runc_bin):
    r, cid, path, hs = supervise(runc_bin, ["sleep", "100"], stdin=True)
    assert hs.ok, hs.message
    r.start(cid)
    with open(f"/proc/{hs.monitor_pid}/status") as f:
        rss_kb = int(f.read().split("VmRSS:")[1].split()[0])
    assert rss_kb < 12 * 1024  # containerd-shim-runc-v2 is ~13 MB here


@pytest.mark.privileged
def test_monitor_reports_create_failure(supervise, runc_bin):
    r, cid, path, hs = supervise(runc_bin, ["/no/such/binary"], log=False)
    assert not hs.ok and hs.runtime_rc == 1
    assert "no such file or directory" in rt.last_error(r.log_path)
    assert not os.path.exists(f"{path}/monitor.sock")


@pytest.mark.privileged
@pytest.mark.parametrize("files", [1, 3])
def test_monitor_rotates_the_log(supervise, runc_bin, files):
    r, cid, path, hs = supervise(runc_bin, [
        "sh", "-c", "i=0; while [ $i -lt 400 ]; do echo line $i; i=$((i+1)); done"],
        rotate=(4096, files))
    r.start(cid)
    log = os.path.join(os.path.dirname(path), "log.json")
    deadline = time.monotonic() + 10
    while "line 399" not in open(log).read() and time.monotonic() < deadline:
        time.sleep(0.02)
    names = sorted(n for n in os.listdir(os.path.dirname(path)) if n.startswith("log.json"))
    assert names == ["log.json"] + [f"log.json.{i}" for i in range(1, files)]
    lines = []
    for name in reversed(names):  # oldest first
        size = os.path.getsize(os.path.join(os.path.dirname(path), name))
        assert 0 < size <= 4096
        lines += [json.loads(x)["log"] for x in open(os.path.join(os.path.dirname(path), name))]
    # the newest records are all there and in order, up to the last line
    assert lines[-1] == "line 399\n"
    first = int(lines[0].split()[1])
    assert lines == [f"line {i}\n" for i in range(first, 400)]
    assert os.path.getsize(log) > 0


@pytest.mark.privileged
def test_zygote_forks_monitors_that_outlive_it(tmp_path, runc_bin):
    import ctypes

    zygote = mc.Zygote(str(tmp_path / "monitors"))
    made = []
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphaned monitors come to us
    try:
        for _ in range(2):
            cid = f"dy-{uuid.uuid4().hex[:10]}"
            path = tmp_path / cid
            cfg = busybox.base_config(["sh", "-c", "read x; echo got $x; exit 6"])
            cfg["root"]["path"] = str(path / "rootfs")
            busybox.make_bundle(path, cfg)
            r = rt.Runtime(runc_bin, str(tmp_path / "root"), str(path))
            hs = mc.spawn(str(path), r.create_argv(cid, f"{path}/init.pid"), f"{path}/init.pid",
                          str(path / "log.json"), stdin=True, zygote=zygote)
            made.append((r, cid, str(path), hs))
            assert hs.ok and hs.popen is None, hs.message
            with open(f"/proc/{hs.monitor_pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            assert int(fields[1]) == zygote._popen.pid  # the zygote is the parent (reaper)
            assert int(fields[3]) == hs.monitor_pid  # and its own session
            with open(f"/proc/{hs.monitor_pid}/comm") as f:
                assert f.read().strip() == "dy-monitor"
        zygote.close()  # managerd gone: the monitors keep going
        for r, cid, path, _ in made:
            r.start(cid)
            att = mc.MonitorClient(path).attach("", "ioe")
            att.write(b"hi\n")
            assert b"".join(d for _, d in att.frames()) == b"got hi\n"
            # the output can end before the monitor reaped the init: poll for the exit
            deadline = time.monotonic() + 10
            while (status := mc.MonitorClient(path).state()[""].status) is None \
                    and time.monotonic() < deadline:
                time.sleep(0.01)
            assert status == 6
    finally:
        zygote.close()
        for r, cid, path, hs in made:
            try:
                r.delete(cid, force=True)
            except errdefs.EngineError:
                pass
            try:
                mc.MonitorClient(path, timeout=5).shutdown(force=True)
            except errdefs.EngineError:
                pass
            try:
                os.waitpid(hs.monitor_pid, 0)
            except ChildProcessError:
                pass
        libc.prctl(36, 0, 0, 0, 0)


def test_runtime_exit_codes_map_to_errdefs():
    assert isinstance(rt.error_for("kill", "c1", "container does not exist"), errdefs.NotFound)
    assert isinstance(rt.error_for("start", "c1", "cannot start an already running container"),
                      errdefs.FailedPrecondition)
    assert isinstance(rt.error_for("create", "c1", "container with given ID already exists"),
                      errdefs.AlreadyExists)
    err = rt.error_for("create", "c1", "unknown flag --x", rc=2)
    assert isinstance(err, rt.RuntimeFailed) and "command line" in str(err)
    err = rt.error_for("exec", "c1", 'exec: "/x": stat /x: no such file or directory', rc=255)
    assert isinstance(err, rt.RuntimeFailed) and "no such file or directory" in str(err)


def test_log_lines_in_bulk_and_split(tmp_path):
    """The monitor's line splitting: partial lines wait for their end, long ones are cut at
    16 KiB, odd bytes are escaped, both streams keep their names."""
    path = str(tmp_path / "log.json")
    mon = wire.Monitor(str(tmp_path), path)
    proc = wire.Proc("", False)
    proc.log = mon.open_log()
    mon.log(proc, wire.STDERR, b'a "q" \\ \t\xff caf\xc3\xa9\nsecond\npart')
    mon.log(proc, wire.STDERR, b"ial\n")
    mon.log(proc, wire.STDOUT, b"x" * 20000 + b"\nshort\n")
    mon.log(proc, wire.STDOUT, b"y" * 17000)  # no newline yet: cut at 16 KiB only
    os.close(proc.log)
    recs = [json.loads(line) for line in open(path)]
    assert [(r["log"][:6], len(r["log"]), r["stream"]) for r in recs] == [
        ('a "q" ', 16, "stderr"), ("second", 7, "stderr"), ("partia", 8, "stderr"),
        ("xxxxxx", 16384, "stdout"), ("xxxxxx", 3617, "stdout"), ("short\n", 6, "stdout"),
        ("yyyyyy", 16384, "stdout")]
    assert recs[0]["log"] == 'a "q" \\ \t\ufffd café\n'
    assert bytes(proc.partial[wire.STDOUT]) == b"y" * (17000 - 16384)


def test_monitor_pidfd_wait_works_past_fd_setsize():
    """Delete waits for a monitor it cannot reap through a pidfd; managerd may hold more
    than 1024 descriptors (a subscription per task), past what select() takes."""
    import resource
    import subprocess

    from dockyard.managerd.tasks import local

    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] <= 1500:
        pytest.skip("RLIMIT_NOFILE too low for a descriptor past 1024")
    child = subprocess.Popen(["sleep", "0.2"])
    pidfd = os.pidfd_open(child.pid)
    high = os.dup2(pidfd, 1500, inheritable=False)
    os.close(pidfd)
    try:
        assert not local._pidfd_exited(high, 0.01)
        assert local._pidfd_exited(high, 10)
    finally:
        os.close(high)
        child.wait()
