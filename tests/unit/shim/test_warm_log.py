"""_warm's choice of cgroup file and its thread discipline; log record formats."""

from __future__ import annotations

import builtins
import io
import json
import os

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


def test_thread_rewrites_until_stopped_and_is_joined(tmp_path, monkeypatch):
    procs = tmp_path / "cgroup.procs"
    procs.write_text("")
    monkeypatch.setattr(_warm, "_own_procs", lambda root: str(procs))
    monkeypatch.setattr(_warm, "_REPEAT", 0.001)
    _warm.start(str(tmp_path))
    _warm.stop()
    assert procs.read_text().startswith("0")
    assert not _warm._running
    _warm.start(str(tmp_path))  # restartable after a stop
    _warm.stop()


def test_missing_file_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setattr(_warm, "_own_procs", lambda root: str(tmp_path / "nope"))
    _warm.start(str(tmp_path))
    _warm.stop()


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
