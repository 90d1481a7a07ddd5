"""`dockyard` driven as a user would, against a real apid + managerd (+ the shim):
terminals, copies, images from containers (split from test_integration.py to run in parallel).

One engine per module (temporary roots and sockets); every test names its
containers with a uuid suffix and removes them. Skips with the reason when the
engine cannot be started or given a busybox image.
"""

from __future__ import annotations

import uuid

import pytest

from .engine import DOCKYARD

pytestmark = [pytest.mark.privileged, pytest.mark.slow, pytest.mark.timeout(300)]


def name() -> str:
    return f"dy-cli-{uuid.uuid4().hex[:8]}"


def test_run_it_under_a_pty(engine):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(DOCKYARD[0], [*DOCKYARD[1:], "run", "-it", "--rm", "busybox", "sh"],
                          env=engine.env, timeout=60, dimensions=(24, 80))
    try:
        child.expect(r"[#$] ")
        child.sendline("echo $((6*7)); stty size")
        child.expect("42")
        child.expect("24 80")
        child.sendline("exit 3")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 3


def test_run_it_detach_keeps_the_container_and_attach_returns(engine):
    pexpect = pytest.importorskip("pexpect")
    n = name()
    child = pexpect.spawn(DOCKYARD[0], [*DOCKYARD[1:], "run", "-it", "--name", n, "busybox",
                                        "sh"], env=engine.env, timeout=60)
    try:
        child.expect(r"[#$] ")
        child.send("\x10\x11")  # ctrl-p ctrl-q
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        assert engine.cli("inspect", "-f", "{{.State.Running}}", n).stdout == "true\n"
        child = pexpect.spawn(DOCKYARD[0], [*DOCKYARD[1:], "attach", n], env=engine.env,
                              timeout=60)
        child.sendline("echo back-$((1+1))")
        child.expect("back-2")
        child.sendline("exit 4")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 4
    finally:
        child.close(force=True)
        engine.cli("rm", "-f", n)


def test_cp_both_ways_and_container_verbs(engine, tmp_path):
    n = name()
    assert engine.cli("run", "-d", "--name", n, "busybox", "sleep", "300").returncode == 0
    try:
        (tmp_path / "in.txt").write_text("from the host\n")
        (tmp_path / "dir/sub").mkdir(parents=True)
        (tmp_path / "dir/sub/f").write_text("deep\n")
        assert engine.cli("cp", str(tmp_path / "in.txt"), f"{n}:/tmp/").returncode == 0
        assert engine.cli("cp", str(tmp_path / "dir"), f"{n}:/tmp/copied").returncode == 0
        r = engine.cli("exec", n, "cat", "/tmp/in.txt", "/tmp/copied/sub/f")
        assert r.stdout == "from the host\ndeep\n", r.stderr
        assert engine.cli("cp", f"{n}:/etc/passwd", str(tmp_path / "pw")).returncode == 0
        assert (tmp_path / "pw").read_text().startswith("root:")
        assert engine.cli("cp", f"{n}:/tmp/copied", str(tmp_path / "back")).returncode == 0
        assert (tmp_path / "back/sub/f").read_text() == "deep\n"

        top = engine.cli("top", n).stdout.splitlines()
        assert top[0].split()[:2] == ["UID", "PID"] and "sleep 300" in top[1]
        stats = engine.cli("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", n)
        assert stats.stdout == f"{n} 1\n", stats.stderr
        assert engine.cli("pause", n).returncode == 0
        assert engine.cli("inspect", "-f", "{{.State.Status}}", n).stdout == "paused\n"
        assert engine.cli("unpause", n).returncode == 0
        assert engine.cli("update", "--memory", "64m", n).returncode == 0
        assert engine.cli("inspect", "-f", "{{.HostConfig.Memory}}", n).stdout == "67108864\n"
        n2 = name()
        assert engine.cli("rename", n, n2).returncode == 0
        n = n2
        assert engine.cli("kill", n).stdout == f"{n}\n"
        assert engine.cli("wait", n).stdout == "137\n"
        events = engine.cli("events", "--since", "60s", "--until", "0s", "--filter",
                            f"container={n}", "--format", "{{.Action}}")
        assert "kill" in events.stdout.split() or "die" in events.stdout.split(), events.stderr
    finally:
        engine.cli("rm", "-f", n)


def test_commit_save_load_export(engine, tmp_path):
    n = name()
    tag = f"dy-snap-{uuid.uuid4().hex[:6]}:v1"
    assert engine.cli("run", "--name", n, "busybox", "sh", "-c",
                      "echo saved > /marker").returncode == 0
    try:
        r = engine.cli("commit", "-m", "snapshot", n, tag)
        assert r.returncode == 0 and r.stdout.startswith("sha256:"), r.stderr
        r = engine.cli("run", "--rm", tag, "cat", "/marker")
        assert r.stdout == "saved\n", r.stderr
        assert engine.cli("save", "-o", str(tmp_path / "img.tar"), tag).returncode == 0
        assert engine.cli("rmi", tag).returncode == 0
        r = engine.cli("load", "-i", str(tmp_path / "img.tar"))
        assert r.returncode == 0 and "Loaded image" in r.stdout, r.stderr
        r = engine.cli("export", n, text=False)
        assert r.returncode == 0 and len(r.stdout) > 100_000
        import io
        import tarfile

        names = tarfile.open(fileobj=io.BytesIO(r.stdout)).getnames()
        assert "marker" in names or "./marker" in names
        imported = tag.replace(":v1", ":imported")
        (tmp_path / "fs.tar").write_bytes(r.stdout)
        r = engine.cli("import", "-m", "from export", str(tmp_path / "fs.tar"), imported)
        assert r.returncode == 0 and r.stdout.startswith("sha256:"), r.stderr
        r = engine.cli("run", "--rm", imported, "/bin/cat", "/marker")
        assert r.stdout == "saved\n", r.stderr
    finally:
        engine.cli("rm", "-f", n)
        engine.cli("rmi", "-f", tag)
        engine.cli("rmi", "-f", tag.replace(":v1", ":imported"))


def test_exec_it_under_a_pty(engine):
    pexpect = pytest.importorskip("pexpect")
    n = name()
    assert engine.cli("run", "-d", "--name", n, "busybox", "sleep", "300").returncode == 0
    try:
        child = pexpect.spawn(DOCKYARD[0], [*DOCKYARD[1:], "exec", "-it", n, "sh"],
                              env=engine.env, timeout=60)
        try:
            child.expect(r"[#$] ")
            child.sendline("tty; echo $((2*21)); exit 7")
            child.expect("/dev/pts/")
            child.expect("42")
            child.expect(pexpect.EOF)
        finally:
            child.close(force=True)
        assert child.exitstatus == 7
    finally:
        engine.cli("rm", "-f", n)


def test_stats_stream_picks_up_containers_that_start_later(engine):
    import subprocess
    import time

    n = name()
    proc = subprocess.Popen([*DOCKYARD, "stats", "--format", "{{.Name}} {{.PIDs}}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=engine.env)
    try:
        time.sleep(1.5)
        assert engine.cli("run", "-d", "--name", n, "busybox", "sleep", "300").returncode == 0
        deadline = time.monotonic() + 30
        seen = False
        while time.monotonic() < deadline and not seen:
            line = proc.stdout.readline()
            seen = line.strip() == f"{n} 1"
        assert seen
    finally:
        proc.kill()
        proc.wait(10)
        engine.cli("rm", "-f", n)
