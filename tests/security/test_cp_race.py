"""docker cp against a container that races it (CVE-2018-15664 class).

A process swaps a directory on the copy path for a symlink to `/` (and back) as
fast as it can while files are copied out of and into it. Resolved through host
paths, some copies would read the host's file or write into the host's
directory; resolved inside the root (openat2 RESOLVE_IN_ROOT, or the fd walk
fallback) every copy sees only the container. The host side is a marker
directory whose path also exists inside the container with different content.

- in-process: apid's rootfs functions on a plain directory as the root, with a
  Python racer process, once with openat2 and once with the fallback walk;
- end to end: a running busybox container racing in a shell loop, copied into
  and out of through apid's archive API (HEAD, GET, PUT) many times.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import time
import uuid

import pytest
from dockyard.apid import _inroot, rootfs

from dockyard import errdefs

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(240)]

ROUNDS = 60

# renameat2(RENAME_EXCHANGE): `d` is always there, a directory or a symlink to /
RACER = r"""
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
w, deadline = sys.argv[1].encode(), time.monotonic() + float(sys.argv[2])
os.symlink("/", w + b"/lnk")
while time.monotonic() < deadline:
    if libc.renameat2(-100, w + b"/d", -100, w + b"/lnk", 2) != 0:
        sys.exit(f"renameat2: {os.strerror(ctypes.get_errno())}")
"""


def tar_of(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in entries.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def contents(data: bytes) -> list[bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return [tf.extractfile(m).read() for m in tf if m.isfile()]


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture(params=["openat2", "walk"])
def resolver(request):
    """Each resolver in turn; no fd may be left open by what the test did (errors too)."""
    if request.param == "openat2" and not _inroot.HAVE_OPENAT2:
        pytest.skip("the kernel has no openat2")
    old = _inroot.use_openat2(request.param == "openat2")
    before = open_fds()
    yield request.param
    _inroot.use_openat2(old)
    leaked = open_fds() - before
    assert not leaked, f"fds left open: {leaked}"


def test_cp_functions_stay_in_root_while_racing(tmp_path, host_marker, resolver):
    """GET/HEAD/PUT's building blocks against a racer, on a directory as the root."""
    root = tmp_path / "root"
    marker = str(host_marker)  # absolute: under a symlink to / it names the host's dir
    for base in (root / "w" / "d", root):
        (base / marker.lstrip("/")).mkdir(parents=True)
        (base / marker.lstrip("/") / "sentinel").write_text("container")
    racer = subprocess.Popen([sys.executable, "-c", RACER, str(root / "w"), "60"])
    rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        seen = set()
        for i in range(ROUNDS):
            for path in (f"/w/d{marker}/sentinel", f"/w/d{marker}", "/w/d/"):
                out = io.BytesIO()
                try:
                    rootfs.tar_path(rootfd, path, out)
                    st = rootfs.path_stat(rootfd, path)
                except errdefs.NotFound:
                    continue  # the racer had `d` renamed away
                assert st["name"]
                found = contents(out.getvalue())
                assert b"host" not in found, (resolver, path)
                seen.update(found)
            for dest, names in ((f"/w/d{marker}", {f"pwned-{i}": b"x", "sentinel": b"pwned"}),
                                ("/w/d", {f"{marker.lstrip('/')}/pwned-b{i}": b"x"})):
                try:
                    rootfs.extract_tar(rootfd, dest, io.BytesIO(tar_of(names)))
                except errdefs.NotFound:
                    pass
            host_marker.assert_untouched()
        assert racer.poll() is None, "the racer stopped early"
        assert seen, "no copy ever succeeded"
    finally:
        racer.kill()
        racer.wait()
        os.close(rootfd)
    host_marker.assert_untouched()
    # what was written landed in the container's two copies of the marker path
    landed = sorted(os.listdir(root / marker.lstrip("/")) +
                    os.listdir(root / "w" / "d" / marker.lstrip("/")))
    assert any(n.startswith("pwned") for n in landed), landed


def test_cp_walk_confines_symlinks_dotdot_and_magic_links(tmp_path, host_marker, resolver):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "f").write_text("in")
    os.symlink("/", root / "a" / "up")
    os.symlink("../../../../..", root / "dd")
    os.symlink(f"/proc/self/root{host_marker}", root / "magic")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        for path in ("a/up/a/f", "/dd/a/f", "/../../a/f", "a/up/../../a/f"):
            fd = _inroot.resolve(rootfd, path)
            try:
                assert os.readlink(f"/proc/self/fd/{fd}") == str(root / "a" / "f"), path
            finally:
                os.close(fd)
        assert _inroot.resolve_path(rootfd, "dd/a/up/a/f") == "/a/f"
        with pytest.raises(OSError):  # the magic link is text, or refused: never the host's
            os.close(_inroot.resolve(rootfd, "magic/sentinel"))
        with pytest.raises(errdefs.InvalidArgument):
            rootfs.path_stat(rootfd, "/loop1/x")
        with pytest.raises(errdefs.NotFound):
            rootfs.tar_path(rootfd, f"/a/up{host_marker}/sentinel", io.BytesIO())
        assert rootfs.path_stat(rootfd, "/a/up")["linkTarget"] == "/"
        with pytest.raises(errdefs.InvalidArgument):
            rootfs.extract_tar(rootfd, "/a", io.BytesIO(tar_of({"../../x": b"x"})))
        with pytest.raises(errdefs.InvalidArgument):
            rootfs.extract_tar(rootfd, "/a/f", io.BytesIO(tar_of({"x": b"x"})))
        with pytest.raises(errdefs.InvalidArgument):
            rootfs.extract_tar(rootfd, "/a", io.BytesIO(b"not a tar" * 100))
    finally:
        os.close(rootfd)
    host_marker.assert_untouched()


# --- end to end through apid -----------------------------------------------------------------

@pytest.fixture
def racing(stack, busybox, host_marker):
    """A running container swapping /w/d between a directory and a symlink to /."""
    name = f"dy-sec-race-{uuid.uuid4().hex[:8]}"
    m = str(host_marker)
    script = (f"mkdir -p /w/d{m} {m} && echo container > /w/d{m}/sentinel &&"
              f" echo container > {m}/sentinel && cd /w && touch ready &&"
              " while :; do mv d d.real; ln -s / d; rm d; mv d.real d; done")
    r = stack.docker("run", "-d", "--name", name, busybox, "sh", "-c", script)
    assert r.returncode == 0, r.stderr.decode() + stack.apid.log()
    yield name
    stack.docker("rm", "-f", name)


def test_cp_into_and_out_of_a_racing_container(stack, racing, host_marker):
    m = str(host_marker)
    with stack.http() as c:
        deadline = time.monotonic() + 30
        while c.head(f"/containers/{racing}/archive",
                     params={"path": "/w/ready"}).status_code != 200:
            assert time.monotonic() < deadline, stack.apid.log()
            time.sleep(0.1)
        ok_out = ok_in = 0
        for i in range(ROUNDS):
            for path in (f"/w/d{m}/sentinel", f"/w/d{m}"):
                r = c.get(f"/containers/{racing}/archive", params={"path": path})
                assert r.status_code in (200, 404), r.text
                if r.status_code == 200:
                    assert b"host" not in contents(r.content), path
                    ok_out += 1
                h = c.head(f"/containers/{racing}/archive", params={"path": path})
                assert h.status_code in (200, 404)
            for dest, names in ((f"/w/d{m}", {f"pwned-{i}": b"x", "sentinel": b"pwned"}),
                                ("/w/d", {f"{m.lstrip('/')}/pwned-b{i}": b"x"})):
                r = c.put(f"/containers/{racing}/archive", params={"path": dest},
                          content=tar_of(names), headers={"Content-Type": "application/x-tar"})
                assert r.status_code in (200, 404), r.text
                ok_in += r.status_code == 200
            host_marker.assert_untouched()
        assert ok_out and ok_in, (ok_out, ok_in)
        r = c.get(f"/containers/{racing}/json")
        assert r.json()["State"]["Running"], "the racing container died"
    host_marker.assert_untouched()


def test_cp_created_container_sees_its_binds_and_volumes(stack, busybox, tmp_path):
    """A container that is not running: its snapshot mounted, binds and volumes bound
    over it through fds resolved in the root (read-only binds stay read-only)."""
    name = f"dy-sec-cpvol-{uuid.uuid4().hex[:8]}"
    bind = tmp_path / "bind"
    bind.mkdir()
    (bind / "f").write_text("bound")
    r = stack.docker("create", "--name", name, "-v", f"{bind}:/data/ro:ro", "-v", "/vol",
                     busybox, "true")
    assert r.returncode == 0, r.stderr.decode()
    try:
        with stack.http() as c:
            r = c.get(f"/containers/{name}/archive", params={"path": "/data/ro/f"})
            assert r.status_code == 200, r.text
            assert contents(r.content) == [b"bound"]
            r = c.put(f"/containers/{name}/archive", params={"path": "/vol"},
                      content=tar_of({"v": b"in-volume"}))
            assert r.status_code == 200, r.text
            r = c.put(f"/containers/{name}/archive", params={"path": "/data/ro"},
                      content=tar_of({"w": b"x"}))
            assert r.status_code >= 400 and "Read-only" in r.json()["message"], r.text
            assert sorted(os.listdir(bind)) == ["f"]
            vol = c.get(f"/containers/{name}/json").json()["Mounts"]
            src = next(m["Source"] for m in vol if m["Destination"] == "/vol")
            assert (open(os.path.join(src, "v")).read()) == "in-volume"
        # only this stack's: other workers' daemons may be in a cp of their own
        stack_dir = str(stack.apid.base.parent)
        with open("/proc/self/mountinfo") as f:
            assert not [ln for ln in f if "dockyard-cp-" in ln and stack_dir in ln]
    finally:
        stack.docker("rm", "-f", "-v", name)


def test_cp_diff_of_a_racing_container_lists_only_its_files(stack, racing, host_marker):
    """`docker diff` walks the running container's upper dir fd by fd: a directory
    swapped for a symlink to / never makes it list the host's root."""
    top = str(host_marker).lstrip("/").split("/")[0]  # the marker's first component
    with stack.http() as c:
        deadline = time.monotonic() + 30
        while c.head(f"/containers/{racing}/archive",
                     params={"path": "/w/ready"}).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for _ in range(ROUNDS):
            r = c.get(f"/containers/{racing}/changes")
            assert r.status_code == 200, r.text
            for change in r.json() or []:
                parts = change["Path"].split("/")
                if parts[1:3] in (["w", "d"], ["w", "d.real"]) and len(parts) > 3:
                    assert parts[3] == top, f"host entry listed: {change['Path']}"


def test_cp_root_of_a_running_container_leaves_out_kernel_mounts(stack, busybox):
    """GET archive of `/` on a running container: its files and volumes, with /proc,
    /sys, /dev/pts... as empty directories (dockerd's archive sees the rootfs, not the
    container's kernel mounts); a file under /proc asked for by name is still read."""
    name = f"dy-sec-cproot-{uuid.uuid4().hex[:8]}"
    r = stack.docker("run", "-d", "--name", name, "-v", "/vol", busybox, "sh", "-c",
                     "echo v > /vol/f && echo r > /rootfile && exec sleep 300")
    assert r.returncode == 0, r.stderr.decode()
    try:
        with stack.http() as c:
            deadline = time.monotonic() + 30
            while c.head(f"/containers/{name}/archive",
                         params={"path": "/rootfile"}).status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            r = c.get(f"/containers/{name}/archive", params={"path": "/"}, timeout=60)
            assert r.status_code == 200, r.text
            with tarfile.open(fileobj=io.BytesIO(r.content)) as tf:
                names = {m.name.rstrip("/") for m in tf}
            assert {"./rootfile", "./vol/f", "./bin/busybox", "./proc", "./sys"} <= names
            assert not [n for n in names if n.startswith(("./proc/", "./sys/", "./dev/pts/",
                                                         "./dev/mqueue/"))]
            r = c.get(f"/containers/{name}/archive", params={"path": "/proc/1/cmdline"})
            assert r.status_code == 200 and contents(r.content) == [b""]  # size 0 in procfs
            r = c.get(f"/containers/{name}/archive", params={"path": "/proc/1/"})
            assert r.status_code == 200, r.text
    finally:
        stack.docker("rm", "-f", "-v", name)


def test_cp_never_uses_the_root_of_a_reused_pid(tmp_path, host_marker):
    """A "running" container whose recorded pid now belongs to another process (here:
    the test itself, a host process): apid checks the pid's cgroup, finds it is not the
    container's, and works on the container's own snapshot instead of the host's /."""
    import asyncio

    from dockyard.apid.container import Container, State
    from dockyard.apid.manager import Mount

    cid = uuid.uuid4().hex * 2
    assert rootfs._proc_root(os.getpid(), cid) is None
    own = open(f"/proc/{os.getpid()}/cgroup").read().strip().split("\n")[0].split(":")[-1]
    if own.strip("/"):
        fd = rootfs._proc_root(os.getpid(), own.strip("/").split("/")[-1])
        assert fd is not None
        os.close(fd)
    snap = tmp_path / "snapshot"
    snap.mkdir()
    (snap / "in-snapshot").write_text("container")

    class Manager:
        async def snapshot_mounts(self, key):
            return [Mount("bind", str(snap), options=["rbind", "rw"])]

    c = Container(id=cid, name="/x", created=0, image="i", image_id="sha256:0", image_ref="i",
                  config={}, host_config={}, snapshot_key=cid,
                  state=State(status="running", pid=os.getpid()))

    async def listing() -> list[str]:
        async with rootfs.open_root(Manager(), c) as fd:
            dfd = _inroot.reopen(fd, os.O_RDONLY | os.O_DIRECTORY)
            try:
                return sorted(os.listdir(dfd))
            finally:
                os.close(dfd)

    assert asyncio.run(listing()) == ["in-snapshot"]
    with open("/proc/self/mountinfo") as f:  # only ours: other workers may be in a cp
        assert not [ln for ln in f if "dockyard-cp-" in ln and tmp_path.name in ln]
    host_marker.assert_untouched()


def test_cp_extract_takes_dotdot_prefixed_names_refuses_dotdot(tmp_path):
    """`..foo` is a plain file name (moby checks for a `../` prefix); `../x` and a hard
    link to `../x` climb out and are refused."""
    root = tmp_path / "root"
    (root / "dst").mkdir(parents=True)
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        rootfs.extract_tar(fd, "/dst", io.BytesIO(tar_of({"..foo": b"a", "d/..bar": b"b"})))
        assert (root / "dst" / "..foo").read_bytes() == b"a"
        assert (root / "dst" / "d" / "..bar").read_bytes() == b"b"
        with pytest.raises(errdefs.InvalidArgument, match="invalid tar entry"):
            rootfs.extract_tar(fd, "/dst", io.BytesIO(tar_of({"d/../../x": b"c"})))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            ti = tarfile.TarInfo("hl")
            ti.type, ti.linkname = tarfile.LNKTYPE, "../x"
            tf.addfile(ti)
        with pytest.raises(errdefs.InvalidArgument, match="invalid hard link target"):
            rootfs.extract_tar(fd, "/dst", io.BytesIO(buf.getvalue()))
    finally:
        os.close(fd)
    assert not (tmp_path / "x").exists()


def test_cp_trailing_slash_on_a_file_is_not_found(tmp_path, resolver):
    """`docker cp c:/f/ .` names a directory: a file there is 404 (ENOTDIR), not an
    empty archive or the file's stat; a symlink to a directory is followed."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "f").write_bytes(b"x")
    (root / "d").mkdir()
    (root / "d" / "in").write_bytes(b"y")
    os.symlink("/d", root / "l")
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        for path in ("/f/", "/f/."):
            with pytest.raises(errdefs.NotFound, match="Could not find the file"):
                rootfs.path_stat(fd, path)
            with pytest.raises(errdefs.NotFound):
                rootfs.tar_path(fd, path, io.BytesIO())
        assert rootfs.path_stat(fd, "/f")["size"] == 1
        out = io.BytesIO()
        rootfs.tar_path(fd, "/l/", out)
        assert contents(out.getvalue()) == [b"y"]
    finally:
        os.close(fd)
