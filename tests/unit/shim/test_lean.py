"""shim/lean.py's pure parts: what it takes on, and that its copies match the full CLI's."""

from __future__ import annotations

import ast

import pytest
from dockyard.shim import lean
from dockyard.shim.container import parse_signal

from dockyard import paths
from dockyard.oci import _json


def test_runtime_root_is_paths_default():
    assert lean.RUNTIME_ROOT == paths.RUNTIME_ROOT


@pytest.mark.parametrize("argv, want", [
    (["start", "c1"], (lean.RUNTIME_ROOT, "start", "c1", [])),
    (["--root", "/r", "state", "c1"], ("/r", "state", "c1", [])),
    (["--root=/r/", "--log", "/l.json", "--log-format", "json", "kill", "c1", "9"],
     ("/r", "kill", "c1", ["9"])),
    (["--root", "/r", "delete", "--force", "c1"], ("/r", "delete", "c1", ["--force"])),
    (["delete", "-f", "c1"], (lean.RUNTIME_ROOT, "delete", "c1", ["-f"])),
])
def test_parses_the_common_forms(argv, want):
    assert lean._parse(argv) == want


@pytest.mark.parametrize("argv", [
    [], ["start"], ["create", "c1"], ["exec", "c1", "true"], ["--debug", "state", "c1"],
    ["--systemd-cgroup", "state", "c1"], ["--log-format", "xml", "state", "c1"],
    ["kill", "--all", "c1"], ["kill", "c1", "9", "x"], ["start", "c1", "c2"],
    ["state", "../c1"], ["state", "-c1"], ["state", ".c1"], ["delete", "--forse", "c1"],
    ["--root"], ["--version"],
])
def test_hands_everything_else_over(argv):
    assert lean._parse(argv) is None


def test_relative_root_is_made_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert lean._parse(["--root", "r", "state", "c1"])[0] == f"{tmp_path}/r"


@pytest.mark.parametrize("text", ["9", "64", "KILL", "kill", "SIGKILL", "sigterm", "USR1",
                                  "SIGRTMIN"])
def test_signal_names_as_the_full_cli(text):
    assert lean._signal_number(text) == parse_signal(text)


@pytest.mark.parametrize("text", ["0", "65", "NOPE", "SIG_DFL", "_DFL", ""])
def test_bad_signals_hand_over(text):
    assert lean._signal_number(text) is None


@pytest.mark.parametrize("obj", [
    {"ociVersion": "1.0.2-dev", "id": "c", "pid": 12, "status": "running", "bundle": "/b",
     "rootfs": "/b/rootfs", "created": "2026-01-01T00:00:00Z", "owner": ""},
    {"id": "ü\"\\\n", "annotations": {"a": "b", "c": ""}, "empty": {}, "list": [1, "x"],
     "none": None, "t": True, "f": False, "nested": {"x": {"y": [[], {}]}}},
])
def test_state_json_is_printed_like_oci_json(obj):
    assert lean._pretty(obj, "") == _json.dumps(obj, indent=2)


def test_launcher_is_python_with_the_flags_in_the_shebang():
    text = lean.launcher("/usr/bin/python3", "/opt/dock yard")
    first, _, body = text.partition("\n")
    assert first == "#!/usr/bin/python3 -IS"
    ast.parse(body)
    assert "'/opt/dock yard/shim/lean.py'" in body and "lean.run('/opt/dock yard/src')" in body


def test_delete_hands_over_when_the_state_dir_cannot_be_renamed(monkeypatch, tmp_path):
    import errno
    import json
    import os
    import posix

    directory = tmp_path / "c1"
    directory.mkdir()
    # a stopped container: our own pid with another start time is not its init
    (directory / "state.json").write_text(json.dumps({
        "id": "c1", "pid": os.getpid(), "start_time": 1,
        "cgroup": {"version": 2, "path": str(tmp_path / "no-such-cgroup")}}))

    class Busy:
        def __getattr__(self, name):
            return getattr(posix, name)

        @staticmethod
        def rename(src, dst):
            raise OSError(errno.EBUSY, "Device or resource busy", src)

    monkeypatch.setattr(lean, "posix", Busy())
    assert lean.main(["--root", str(tmp_path), "delete", "c1"]) is None
    assert (directory / "state.json").exists()
    monkeypatch.undo()
    assert lean.main(["--root", str(tmp_path), "delete", "c1"]) == 0
    assert not directory.exists() and os.listdir(tmp_path) == []
