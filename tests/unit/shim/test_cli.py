"""cli.py parsing and the small pure helpers of container.py."""

from __future__ import annotations

import io
import os

import pytest
from dockyard.shim import cli
from dockyard.shim.container import check_id, parse_signal, write_pid_file
from dockyard.shim.sync import Channel, Msg

from dockyard.errdefs import InvalidArgument


def test_parse_flags_forms():
    opts, pos = cli.parse_flags(["--bundle=/b", "--pid-file", "/p", "-d", "--no-pivot=false",
                                 "id1"], cli._RUN)
    assert opts == {"bundle": "/b", "pid_file": "/p", "detach": True, "no_pivot": False}
    assert pos == ["id1"]


def test_exec_stops_at_the_command():
    opts, pos = cli.parse_flags(["-e", "A=1", "--env=B=2", "-t", "c1", "sh", "-c", "x --env"],
                                cli._EXEC, stop_at_positional=True)
    assert opts == {"env": ["A=1", "B=2"], "tty": True}
    assert pos == ["c1", "sh", "-c", "x --env"]


def test_unknown_flag_and_missing_value():
    with pytest.raises(cli.UsageError, match="not defined: --nope"):
        cli.parse_flags(["--nope"], cli._CREATE)
    with pytest.raises(cli.UsageError, match="needs an argument"):
        cli.parse_flags(["--bundle"], cli._CREATE)


def test_main_usage_and_version(capsys):
    assert cli.main(["--version"]) == 0
    assert "spec: 1.0.2-dev" in capsys.readouterr().out
    assert cli.main(["bogus"]) == 2
    assert cli.main(["--systemd-cgroup", "list"]) == 1
    assert "not supported" in capsys.readouterr().err


def test_json_log_record(tmp_path, capsys):
    log = tmp_path / "log.json"
    assert cli.main(["--root", str(tmp_path), "--log", str(log), "--log-format", "json",
                     "state", "nope"]) == 1
    import json
    record = json.loads(log.read_text())
    assert record["level"] == "error" and record["msg"] == "container does not exist"
    assert capsys.readouterr().err == "container does not exist\n"


def test_update_resources_merges_json_and_flags():
    res = cli.update_resources({"resources": "-", "memory": "512m", "cpu_quota": "5000",
                                "pids_limit": "7"},
                               io.StringIO('{"memory": {"swap": 1024}, "blockIO": {"weight": 9}}'))
    assert res == {"memory": {"swap": 1024, "limit": 512 << 20}, "cpu": {"quota": 5000},
                   "blockIO": {"weight": 9}, "pids": {"limit": 7}}
    with pytest.raises(InvalidArgument):
        cli.update_resources({"memory": "lots"})


@pytest.mark.parametrize("text, num", [("9", 9), ("KILL", 9), ("SIGKILL", 9), ("term", 15),
                                       ("SIGUSR1", 10), ("HUP", 1)])
def test_signals(text, num):
    assert parse_signal(text) == num


@pytest.mark.parametrize("bad", ["NOPE", "0", "99", "", "-9"])
def test_bad_signals(bad):
    with pytest.raises(InvalidArgument, match="unknown signal"):
        parse_signal(bad)


def test_check_id():
    assert check_id("abc-1.2_3+x") == "abc-1.2_3+x"
    for bad in ("", "../x", "a/b", ".x", "-x", "a b", "é"):
        with pytest.raises(InvalidArgument):
            check_id(bad)


def test_pid_file_is_digits_without_newline(tmp_path):
    path = tmp_path / "init.pid"
    write_pid_file(str(path), 1234)
    assert path.read_bytes() == b"1234"
    write_pid_file(str(path), 99)
    assert path.read_bytes() == b"99"
    assert os.listdir(tmp_path) == ["init.pid"]


def test_channel_round_trip():
    a, b = Channel.pair()
    a.send(Msg.PROCEED)
    b.send(Msg.ERROR, msg="boom")
    b.send(Msg.READY)
    assert b.recv() == {"type": "proceed"}
    assert a.recv() == {"type": "error", "msg": "boom"}
    assert a.recv() == {"type": "ready"}
    b.close()
    assert a.recv() is None
    a.close()
