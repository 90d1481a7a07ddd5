"""_warm's choice of cgroup file and its spawned writers; log record formats."""

from __future__ import annotations

import builtins
import io
import json
import os
import time

from dockyard.shim import _warm
from dockyard.shim.log import Logger

HYBRID = "9:name=systemd:/\n4:memory:/a/b\n1:cpu:/\n0::/user.slice/x\n"
V1_ONLY = "9:name=systemd:/\n4:memory:/a/b\n"


def own_procs(monkeypatch, text: str, root: str) -> str | None:
    real = builtins.open

    def fake(path, *args, **kwargs):
        if path == "/proc/self/cgroup":
            return io.StringIO(text)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake)
    return _warm._own_procs(root)


def test_prefers_the_unified_hierarchy(monkeypatch, tmp_path):
    # a hybrid host: cgroupfs root is a tmpfs, cgroup2 is mounted at unified/
    assert own_procs(monkeypatch, HYBRID, str(tmp_path)) == \
        f"{tmp_path}/unified/user.slice/x/cgroup.procs"
    (tmp_path / "cgroup.procs").write_text("")  # a v2-only host
    assert own_procs(monkeypatch, HYBRID, str(tmp_path)) == \
        f"{tmp_path}/user.slice/x/cgroup.procs"


def test_v1_only_uses_a_controller_hierarchy(monkeypatch, tmp_path):
    assert own_procs(monkeypatch, V1_ONLY, str(tmp_path)) == f"{tmp_path}/memory/a/b/cgroup.procs"


def test_a_spawned_writer_writes_zero_and_is_reaped(tmp_path, monkeypatch):
    procs = tmp_path / "cgroup.procs"
    procs.write_text("")
    monkeypatch.setattr(_warm, "_procs", str(procs))
    monkeypatch.setattr(_warm, "_last", -1.0)
    _warm.start(str(tmp_path))
    assert len(_warm._pids) == 1
    _warm.reap()
    assert procs.read_text() == "0\n" and not _warm._pids
    monkeypatch.setattr(_warm, "_last", time.monotonic())  # as if just spawned
    _warm.start(str(tmp_path))  # the lock is warm: no second writer
    assert not _warm._pids
    monkeypatch.setattr(_warm, "_last", -1.0)
    procs.write_text("")
    _warm.start(str(tmp_path))  # later: again
    assert len(_warm._pids) == 1
    _warm.reap()
    assert procs.read_text() == "0\n" and not _warm._pids


def test_one_writer_at_a_time(tmp_path, monkeypatch):
    fifo = tmp_path / "cgroup.procs"  # a writer blocks on a fifo: like one in a grace period
    os.mkfifo(fifo)
    monkeypatch.setattr(_warm, "_procs", str(fifo))
    monkeypatch.setattr(_warm, "_last", -1.0)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    wfd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        while True:  # fill the pipe: the writer's write blocks
            try:
                os.write(wfd, b"x" * 4096)
            except BlockingIOError:
                break
        _warm.start(str(tmp_path))
        first = list(_warm._pids)
        monkeypatch.setattr(_warm, "_last", -1.0)  # not fresh any more, but still waiting
        _warm.start(str(tmp_path))
        assert _warm._pids == first and len(first) == 1
    finally:
        os.close(wfd)
        os.set_blocking(rfd, True)
        while os.read(rfd, 65536):  # drain until the writer has written and ended
            pass
        _warm.reap()
        os.close(rfd)
    assert not _warm._pids


def test_missing_file_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setattr(_warm, "_procs", str(tmp_path / "nope" / "cgroup.procs"))
    monkeypatch.setattr(_warm, "_last", -1.0)
    _warm.start(str(tmp_path))
    _warm.reap()
    assert not _warm._pids


def test_log_formats(tmp_path, capsys):
    Logger(fmt="text").error('it "broke"')
    line = capsys.readouterr().err
    assert line.startswith('time="') and 'level=error msg="it \\"broke\\""' in line
    path = tmp_path / "log.json"
    log = Logger(str(path), "json", debug=True)
    log.debug("d")
    log.error("e")
    records = [json.loads(x) for x in path.read_text().splitlines()]
    assert [r["level"] for r in records] == ["debug", "error"]
    assert records[1]["msg"] == "e" and records[1]["time"].endswith("Z")
    assert capsys.readouterr().err == "e\n"  # --log given: the bare message on stderr too
    Logger(str(path), "json").debug("hidden")
    assert len(path.read_text().splitlines()) == 2
    assert os.path.exists(path)
