"""Docker's defaults through apid, checked in the OCI spec and inside real containers,
plus the ways an API client could reach the host: bind destinations and `docker cp`.

The stack (registry + managerd + apid on the real shim) is apid's integration
fixture; containers are named `dy-sec-<uuid>` and force-removed.
"""

from __future__ import annotations

import io
import os
import tarfile
import uuid

import pytest
from dockyard.apid import translate

from dockyard import errdefs

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(180)]

DOCKER_CAPS = {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
               "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
               "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}
NEVER_ALLOWED = {"mount", "umount2", "unshare", "setns", "keyctl", "add_key", "request_key",
                 "bpf", "kexec_load", "init_module", "finit_module", "delete_module", "reboot",
                 "swapon", "open_by_handle_at", "pivot_root", "fsopen", "move_mount"}


def spec_for(host_config=None):
    cfg = translate.merge_config({"Hostname": "abcdef012345"}, {"Cmd": ["sh"]})
    return translate.build_spec(translate.SpecInputs(
        container_id="ab" * 32, config=cfg, host_config=dict(host_config or {}),
        hostname="abcdef012345", arch="amd64", kernel="6.1.0"))


def allowed(spec) -> set[str]:
    """Syscalls the profile allows unconditionally (no argument filter)."""
    sc = spec["linux"].get("seccomp")
    return {n for r in sc["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
            for n in r["names"]}


# --- the generated spec (pure) ----------------------------------------------------------------

def test_default_spec_is_dockers():
    spec = spec_for()
    caps = spec["process"]["capabilities"]
    for kind in ("bounding", "effective", "permitted"):
        assert set(caps[kind]) == DOCKER_CAPS and len(caps[kind]) == 14, kind
    assert not caps.get("inheritable") and not caps.get("ambient")
    assert not spec["process"].get("noNewPrivileges")
    assert spec["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert not NEVER_ALLOWED & allowed(spec)
    assert {"/proc/kcore", "/proc/keys", "/sys/firmware"} <= set(spec["linux"]["maskedPaths"])
    assert {"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"} <= \
        set(spec["linux"]["readonlyPaths"])
    sysfs = next(m for m in spec["mounts"] if m["destination"] == "/sys")
    assert "ro" in sysfs["options"]
    assert spec["linux"]["resources"]["devices"][0] == {"allow": False, "access": "rwm"}


def test_security_opts_and_privileged():
    spec = spec_for({"SecurityOpt": ["no-new-privileges"]})
    assert spec["process"]["noNewPrivileges"] is True
    priv = spec_for({"Privileged": True})
    assert "seccomp" not in priv["linux"]
    assert not priv["linux"]["maskedPaths"] and not priv["linux"]["readonlyPaths"]
    assert len(priv["process"]["capabilities"]["bounding"]) > 14
    # --cap-add re-enables only the rules of that capability
    admin = spec_for({"CapAdd": ["SYS_ADMIN"]})
    assert "mount" in allowed(admin) and "kexec_load" not in allowed(admin)


@pytest.mark.parametrize("host_config", [
    {"Binds": ["/tmp:/../../etc"]},
    {"Binds": ["/tmp:/data/../../../etc:ro"]},
    {"Binds": ["/tmp:/"]},
    {"Mounts": [{"Type": "bind", "Source": "/tmp", "Target": "/x/../../etc"}]},
    {"Mounts": [{"Type": "tmpfs", "Target": "/../proc"}]},
    {"Tmpfs": {"/run/../..": ""}},
])
def test_mount_destinations_with_dotdot_or_root_are_refused(host_config):
    with pytest.raises(errdefs.InvalidArgument):
        spec_for(host_config)


# --- inside real containers -------------------------------------------------------------------

@pytest.fixture
def name(stack):
    made = f"dy-sec-{uuid.uuid4().hex[:10]}"
    yield made
    stack.docker("rm", "-f", made)


def test_default_container_is_confined(stack, busybox, name):
    script = ("grep -E 'CapEff|CapBnd|NoNewPrivs|Seccomp:' /proc/self/status;"
              " unshare -m true 2>&1; echo unshare=$?;"
              " mount -t tmpfs none /mnt 2>&1; echo mount=$?;"
              " (: > /proc/sys/kernel/printk_ratelimit) 2>&1; echo procsys=$?;"
              " echo keys=$(wc -c < /proc/keys);"
              " mknod /dev/dy c 1 1 && head -c1 /dev/dy 2>&1; echo mem=$?;"
              " ls /proc | grep -cE '^[0-9]+$'")
    r = stack.docker("run", "--name", name, busybox, "sh", "-c", script)
    assert r.returncode == 0, r.stderr.decode() + stack.apid.log()
    out = r.stdout.decode()
    st = dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)
    assert st["CapEff"] == "00000000a80425fb" and st["CapBnd"] == "00000000a80425fb"
    assert st["NoNewPrivs"] == "0" and st["Seccomp"] == "2"
    lines = [ln for ln in out.splitlines() if ":\t" not in ln]
    assert "Operation not permitted" in lines[0] and lines[1] == "unshare=1", lines
    assert "permission denied" in lines[2].lower() and lines[3] == "mount=1", lines
    assert "Read-only file system" in lines[4] and lines[5] == "procsys=1", lines
    assert lines[6] == "keys=0"
    assert "Operation not permitted" in lines[7] and lines[8] == "mem=1", lines
    assert int(lines[9]) <= 4, "host pids visible"


def test_nnp_honoured_and_privileged_lifts_confinement(stack, busybox, name):
    r = stack.docker("run", "--rm", "--security-opt", "no-new-privileges", busybox,
                     "grep", "NoNewPrivs", "/proc/self/status")
    assert r.returncode == 0 and r.stdout.decode().split() == ["NoNewPrivs:", "1"], r.stderr
    r = stack.docker("run", "--name", name, "--privileged", busybox, "sh", "-c",
                     "grep Seccomp: /proc/self/status; unshare -m true && echo unshared;"
                     " wc -c < /proc/keys | grep -qv '^0$' || echo keys-masked")
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode().split("\n")
    assert out[0].split() == ["Seccomp:", "0"] and out[1] == "unshared", out


def test_bind_destination_with_dotdot_is_400(stack, busybox, tmp_path):
    body = {"Image": busybox, "Cmd": ["true"],
            "HostConfig": {"Binds": [f"{tmp_path}:/../../etc"]}}
    with stack.http() as c:
        r = c.post("/containers/create", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["message"]


# --- docker cp (PUT /containers/{id}/archive) ---------------------------------------------------

def tar_of(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for kind, path, arg in entries:
            ti = tarfile.TarInfo(path)
            if kind == "file":
                data = arg.encode()
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, arg
                tf.addfile(ti)
            elif kind == "hardlink":
                ti.type, ti.linkname = tarfile.LNKTYPE, arg
                tf.addfile(ti)
            elif kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o777
                tf.addfile(ti)
    return buf.getvalue()


def put_archive(stack, ref: str, path: str, data: bytes):
    with stack.http() as c:
        return c.put(f"/containers/{ref}/archive", params={"path": path}, content=data,
                     headers={"Content-Type": "application/x-tar"})


@pytest.fixture(params=["running", "created"])
def target(request, stack, busybox, name, host_marker):
    """A container with planted symlinks to the host marker (`/evil -> /`,
    `/etc/evil-dir -> <marker>`, `/etc/evil-file -> <marker>/sentinel`)."""
    marker = str(host_marker)
    plant = (f"ln -s / /evil && ln -s {marker} /etc/evil-dir &&"
             f" ln -s {marker}/sentinel /etc/evil-file")
    if request.param == "running":
        r = stack.docker("run", "-d", "--name", name, busybox, "sh", "-c",
                         f"{plant} && exec sleep 300")
        assert r.returncode == 0, r.stderr.decode() + stack.apid.log()
        for _ in range(100):
            if stack.docker("exec", name, "test", "-L", "/etc/evil-file").returncode == 0:
                break
    else:
        # planted through the archive API itself: a symlink entry is legitimate content
        r = stack.docker("create", "--name", name, busybox, "true")
        assert r.returncode == 0, r.stderr.decode()
        res = put_archive(stack, name, "/", tar_of([("symlink", "evil", "/")]))
        assert res.status_code == 200, res.text
        res = put_archive(stack, name, "/etc", tar_of([("symlink", "evil-dir", marker),
                                                        ("symlink", "evil-file",
                                                         marker + "/sentinel")]))
        assert res.status_code == 200, res.text
    return name


def read_in(stack, name: str, path: str) -> bytes:
    with stack.http() as c:
        r = c.get(f"/containers/{name}/archive", params={"path": path})
    assert r.status_code == 200, r.text
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tf:
        member = tf.next()
        return tf.extractfile(member).read() if member.isfile() else b""


@pytest.mark.parametrize("entries,path", [
    ([("file", "../../../../../../tmp/dy-sec-escape", "x")], "/"),
    ([("file", "a/../../../../../../tmp/dy-sec-escape", "x")], "/etc"),
])
def test_cp_dotdot_entries_refused(stack, target, host_marker, entries, path):
    r = put_archive(stack, target, path, tar_of(entries))
    assert r.status_code == 400, r.text
    assert not os.path.exists("/tmp/dy-sec-escape")
    host_marker.assert_untouched()


def test_cp_through_symlinks_stays_in_the_container(stack, target, host_marker):
    marker = str(host_marker)
    cases = [
        ("/", [("file", f"evil{marker}/via-root-link", "1")]),        # /evil -> /
        ("/etc", [("file", "evil-dir/via-dir-link", "2")]),            # -> <marker>
        ("/etc", [("file", "evil-file", "3")]),                        # -> <marker>/sentinel
        ("/etc/evil-dir", [("file", "via-path", "4")]),                # the path itself
        ("/", [("symlink", "x", "/"), ("file", f"x{marker}/via-new-link", "5")]),
        ("/", [("hardlink", "hl", f"evil{marker}/sentinel")]),         # link a host file
        ("/", [("dir", f"evil{marker}", "")]),                          # chmod 777 the host dir
    ]
    for path, entries in cases:
        r = put_archive(stack, target, path, tar_of(entries))
        host_marker.assert_untouched()
        assert r.status_code in (200, 400, 404), r.text
    # what was accepted landed inside the container, at the path the symlinks name there
    assert read_in(stack, target, f"{marker}/via-root-link") == b"1"
    assert read_in(stack, target, f"{marker}/via-dir-link") == b"2"


def test_cp_out_never_reads_host_files(stack, target, host_marker):
    """GET/HEAD archive through the container's symlinks to host paths read the
    container's files (absent here: 404), never the host's sentinel."""
    marker = str(host_marker)
    with stack.http() as c:
        for path in ("/etc/evil-file", f"/evil{marker}/sentinel", "/etc/evil-dir/sentinel",
                     "/etc/evil-dir/", f"/../../..{marker}/sentinel"):
            r = c.get(f"/containers/{target}/archive", params={"path": path})
            if r.status_code == 200:
                with tarfile.open(fileobj=io.BytesIO(r.content)) as tf:
                    for m in tf:
                        assert not m.isfile() or tf.extractfile(m).read() != b"host", path
            else:
                assert r.status_code == 404, (path, r.status_code, r.text)
            h = c.head(f"/containers/{target}/archive", params={"path": path})
            assert h.status_code in (200, 404), (path, h.status_code)


def test_host_sysctl_is_refused_and_nothing_runs(stack, busybox, name):
    """Sysctls kernel.core_pattern would change the host: refused (the value is
    the host's own, so nothing changes even if it went through)."""
    with open("/proc/sys/kernel/core_pattern") as f:
        current = f.read().rstrip("\n")
    with stack.http() as c:
        r = c.post("/containers/create", params={"name": name},
                   json={"Image": busybox, "Cmd": ["echo", "ran"],
                         "HostConfig": {"Sysctls": {"kernel.core_pattern": current}}})
        if r.status_code == 201:  # refused at start instead (by the runtime)
            r = c.post(f"/containers/{name}/start")
    assert r.status_code >= 400, r.text
    assert "kernel.core_pattern" in r.json()["message"], r.text


def test_cgroup_parent_climbing_out_is_refused(stack, busybox, name):
    leaf = f"dy-sec-cg-{uuid.uuid4().hex[:6]}"
    r = stack.docker("run", "--name", name, "--cgroup-parent", f"/../../{leaf}", busybox,
                     "echo", "ran")
    assert r.returncode != 0 and b"ran" not in r.stdout
    assert b".." in r.stderr, r.stderr
    base = "/sys/fs/cgroup"
    assert not [h for h in os.listdir(base) if os.path.exists(os.path.join(base, h, leaf))]


def leftovers(stack, cid: str) -> list[str]:
    """Mounts, netns files, cgroups and processes still naming the container."""
    found = []
    with open("/proc/self/mountinfo") as f:
        found += [f"mount {ln.split()[4]}" for ln in f if cid in ln
                  or "dockyard-cp-" in ln and str(stack.apid.base.parent) in ln]
    netns = stack.apid.exec_root / "netns"
    if netns.is_dir():
        found += [f"netns {n}" for n in os.listdir(netns) if cid in n]
    base = "/sys/fs/cgroup"
    for h in os.listdir(base):
        for parent in ("dockyard", ""):
            if os.path.exists(os.path.join(base, h, parent, cid)):
                found.append(f"cgroup {h}/{parent}/{cid}")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if cid.encode() in f.read():
                    found.append(f"process {pid}")
        except OSError:
            pass
    return found


@pytest.mark.parametrize("how", ["bad-sysctl", "bad-cgroup-parent", "ran", "cp-created"])
def test_removed_container_leaves_nothing(stack, busybox, name, how):
    hc = {"bad-sysctl": {"Sysctls": {"kernel.core_pattern": "core"}},
          "bad-cgroup-parent": {"CgroupParent": "/../../x"}}.get(how, {})
    with stack.http() as c:
        r = c.post("/containers/create", params={"name": name},
                   json={"Image": busybox, "Cmd": ["true"], "HostConfig": hc})
        if r.status_code != 201:
            assert r.status_code == 400, r.text
            return
        cid = r.json()["Id"]
        if how != "cp-created":
            c.post(f"/containers/{cid}/start")
            c.post(f"/containers/{cid}/wait", timeout=30)
    if how == "cp-created":
        res = put_archive(stack, name, "/", tar_of([("file", "x", "y")]))
        assert res.status_code == 200, res.text
    assert stack.docker("rm", "-f", name).returncode == 0
    assert leftovers(stack, cid) == []


def test_exec_gets_the_same_confinement(stack, busybox, name):
    r = stack.docker("run", "-d", "--name", name, busybox, "sleep", "300")
    assert r.returncode == 0, r.stderr.decode()
    r = stack.docker("exec", name, "sh", "-c",
                     "grep -E 'CapEff|Seccomp:' /proc/self/status; unshare -m true 2>&1;"
                     " echo rc=$?")
    out = r.stdout.decode().splitlines()
    assert out[0].split() == ["CapEff:", "00000000a80425fb"], out
    assert out[1].split() == ["Seccomp:", "2"], out
    assert "Operation not permitted" in out[2] and out[3] == "rc=1", out


def test_volume_copy_up_through_an_image_symlink_stays_inside(stack, name, host_marker,
                                                               tmp_path):
    """An image whose VOLUME /data is a symlink to a host dir: the new volume is filled
    from the image (nothing there), never from the host dir."""
    import sys

    from helpers import busybox as bb
    from helpers import images
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "apid", "integration"))
    from seed import seed_image
    root = bb.make_rootfs(tmp_path / "img")
    os.symlink(str(host_marker), root / "data")
    image = f"dockyard.test/sec-volume-{uuid.uuid4().hex[:8]}:latest"
    seed_image(stack.managerd.address, "moby", image,
               images.make_image([images.dir_layer(root)], Volumes={"/data": {}},
                                 Cmd=["sh"]))
    r = stack.docker("run", "--name", name, image, "sh", "-c", "ls -A /data; echo end")
    assert r.returncode == 0, r.stderr.decode() + stack.apid.log()
    assert r.stdout.decode().split() == ["end"], r.stdout
    host_marker.assert_untouched()
    stack.docker("rm", "-f", "-v", name)
    stack.docker("rmi", image)


def test_refused_volume_destination_leaves_no_volume(stack, busybox, name):
    with stack.http() as c:
        before = {v["Name"] for v in c.get("/volumes").json().get("Volumes") or []}
        r = c.post("/containers/create", params={"name": name},
                   json={"Image": busybox, "Cmd": ["true"], "Volumes": {"/../../etc": {}}})
        assert r.status_code == 400, r.text
        r = c.post("/containers/create", params={"name": name},
                   json={"Image": busybox, "Cmd": ["true"],
                         "HostConfig": {"Mounts": [{"Type": "volume", "Source": "",
                                                    "Target": "/x/../../etc"}]}})
        assert r.status_code == 400, r.text
        after = {v["Name"] for v in c.get("/volumes").json().get("Volumes") or []}
        assert after == before
        assert c.get(f"/containers/{name}/json").status_code == 404


def test_host_users_cannot_reach_a_container_rootfs(stack, busybox, name):
    """The bundle's rootfs (image setuid binaries, device nodes an image ships) must
    not be reachable by unprivileged host users: some directory managerd creates on
    the way must deny them search (moby CVE-2021-41091, containerd CVE-2021-41103)."""
    r = stack.docker("run", "-d", "--name", name, busybox, "sleep", "300")
    assert r.returncode == 0, r.stderr.decode()
    cid = r.stdout.decode().strip()
    state = stack.managerd.state
    rootfs = next(p for p in state.rglob(cid) if (p / "rootfs" / "bin").is_dir()) / "rootfs"
    walk, path = [], rootfs
    while path != state.parent:
        walk.append((str(path), oct(os.stat(path).st_mode & 0o777)))
        path = path.parent
    assert any(not int(mode, 8) & 0o001 for p, mode in walk if p != str(rootfs)), walk


def test_host_users_cannot_reach_volume_data(stack, busybox, name):
    vol = f"dy-sec-vol-{uuid.uuid4().hex[:8]}"
    with stack.http() as c:
        r = c.post("/volumes/create", json={"Name": vol})
        assert r.status_code == 201, r.text
        try:
            data = r.json()["Mountpoint"]
            walk, path = [], os.path.dirname(data)
            while path != str(stack.apid.data_root.parent):
                walk.append((path, oct(os.stat(path).st_mode & 0o777)))
                path = os.path.dirname(path)
            assert any(not int(mode, 8) & 0o001 for _, mode in walk), walk
        finally:
            c.delete(f"/volumes/{vol}")
