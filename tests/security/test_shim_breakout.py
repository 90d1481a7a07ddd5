"""Break-out attempts against the real dockyard-shim: hostile images and configs.

Every mount destination, masked/read-only path and cwd must resolve inside the
rootfs; device nodes an image or `mknod` brings must be unusable (device
cgroup); /proc must be masked and read-only as Docker makes it; the host's
pids must be invisible; ids and rootfs paths must not name host paths. Each
test also checks that a host directory the attack aims at is untouched and
(via the `shim` fixture) that nothing is leaked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest
from helpers import busybox

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(60)]

# Docker's 14 (oci/caps/defaults.go)
DOCKER_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
               "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
               "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
# dockerd's cgroup device rules (runc adds its own defaults after them)
DOCKER_DEVICE_RULES = [{"allow": False, "access": "rwm"}] + [
    {"allow": True, "type": "c", "major": ma, "minor": mi, "access": "rwm"}
    for ma, mi in ((1, 5), (1, 3), (1, 9), (1, 8), (5, 0), (5, 1))] + [
    {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"}]


def docker_like(args: list[str], writable_root: bool = True) -> dict:
    """busybox config with Docker's capabilities, device rules and no NNP."""
    cfg = busybox.base_config(args, noNewPrivileges=False,
                              capabilities={k: list(DOCKER_CAPS)
                                            for k in ("bounding", "effective", "permitted")})
    cfg["root"]["readonly"] = not writable_root
    cfg["linux"]["resources"] = {"devices": [dict(r) for r in DOCKER_DEVICE_RULES]}
    return cfg


def sh(script: str, **kw) -> dict:
    return docker_like(["sh", "-c", script], **kw)


def run_in(shim, cfg: dict, prepare=None):
    """Run cfg attached in a fresh bundle; prepare(rootfs) may plant things first."""
    cid = shim.container()
    bundle = shim.bundle(cfg)
    if prepare:
        prepare(bundle / "rootfs")
    return shim("run", "--bundle", str(bundle), cid), bundle


# --- mount destinations ----------------------------------------------------------------------

@pytest.mark.parametrize("how", ["absolute", "relative", "root", "dotdot"])
def test_mount_destination_symlink_stays_in_rootfs(shim, tmp_path, host_marker, how):
    """rootfs/etc/evil-* point at a host dir (absolute, ../../.., or /), or the
    destination climbs with `..`: dir binds, file binds and tmpfs mounts must all
    land inside the rootfs, and the host dir stays as it was."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "payload").write_text("bound")
    (tmp_path / "srcfile").write_text("bound-file")
    target = str(host_marker)  # where an escaping mount would land on the host
    links: dict[str, str] = {}
    mounts, checks, leaves = [], [], []
    for kind in ("dir", "file", "tmpfs"):
        leaf = f"dy-{kind}-{uuid.uuid4().hex[:8]}"
        leaves.append(leaf)
        if how == "absolute":
            links[f"evil-{kind}"], dest = target, f"/etc/evil-{kind}/{leaf}"
        elif how == "relative":
            links[f"evil-{kind}"] = "../" * 12 + target.lstrip("/")
            dest = f"/etc/evil-{kind}/{leaf}"
        elif how == "root":
            links[f"evil-{kind}"], dest = "/", f"/etc/evil-{kind}{target}/{leaf}"
        else:
            dest = "/../../../.." + target + f"/../{host_marker.name}/{leaf}"
        if kind == "dir":
            mounts.append({"destination": dest, "type": "bind", "source": str(src),
                           "options": ["rbind", "ro"]})
            checks.append(f"cat {dest}/payload")
        elif kind == "file":
            mounts.append({"destination": dest, "type": "bind",
                           "source": str(tmp_path / "srcfile"), "options": ["bind", "ro"]})
            checks.append(f"cat {dest}")
        else:
            mounts.append({"destination": dest, "type": "tmpfs", "source": "tmpfs",
                           "options": ["size=64k"]})
            checks.append(f"echo in-tmpfs > {dest}/x && cat {dest}/x")
    cfg = sh("; echo; ".join(checks))
    cfg["mounts"] += mounts

    def plant(rootfs):
        for name, link in links.items():
            os.symlink(link, rootfs / "etc" / name)

    res, bundle = run_in(shim, cfg, plant)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["bound", "bound-file", "in-tmpfs"]
    host_marker.assert_untouched()
    for leaf in leaves:
        assert not os.path.exists(f"/{leaf}")
        # the destination was created where the container sees it: inside the rootfs
        assert os.path.lexists(str(bundle / "rootfs") + target + "/" + leaf)


def test_mount_over_proc_through_symlink_lands_inside(shim, tmp_path, host_marker):
    """An image whose /proc is a symlink to a host path gets proc inside its rootfs."""
    cfg = sh("test -r /proc/self/status && readlink /proc")

    def plant(rootfs):
        os.rmdir(rootfs / "proc")
        os.symlink(str(host_marker), rootfs / "proc")

    res, _ = run_in(shim, cfg, plant)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(host_marker)
    host_marker.assert_untouched()


def test_masked_and_readonly_paths_through_symlinks(shim, host_marker):
    """maskedPaths/readonlyPaths entries that are symlinks act on their target in the
    container, never on a host path."""
    cfg = sh("ls -A /secret; echo --; touch /data/x 2>&1; echo rc=$?; touch /other/y && echo ok")
    cfg["linux"]["maskedPaths"] += ["/etc/mask", "/etc/mask-host"]
    cfg["linux"]["readonlyPaths"] += ["/etc/ro", "/etc/ro-host"]

    def plant(rootfs):
        (rootfs / "secret").mkdir()
        (rootfs / "secret/key").write_text("k")
        (rootfs / "data").mkdir()
        (rootfs / "other").mkdir()
        os.symlink("/secret", rootfs / "etc/mask")
        os.symlink("../../data", rootfs / "etc/ro")
        os.symlink(str(host_marker), rootfs / "etc/mask-host")
        os.symlink(str(host_marker), rootfs / "etc/ro-host")

    res, _ = run_in(shim, cfg, plant)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "--", "masked dir still shows its files"
    assert "Read-only file system" in lines[1] and lines[2] == "rc=1"
    assert lines[3] == "ok"
    host_marker.assert_untouched()


def test_cwd_through_symlink_stays_inside(shim, host_marker):
    cfg = sh("pwd; touch here && echo wrote")
    cfg["process"]["cwd"] = "/work/sub"

    def plant(rootfs):
        os.symlink("../../../../../.." + str(host_marker), rootfs / "work")

    res, bundle = run_in(shim, cfg, plant)
    assert res.returncode == 0, res.stderr
    # busybox's pwd shows the physical path: the link's target, inside the container
    assert res.stdout.split() == [str(host_marker) + "/sub", "wrote"]
    host_marker.assert_untouched()
    assert os.path.isfile(str(bundle / "rootfs") + str(host_marker) + "/sub/here")


# --- devices ---------------------------------------------------------------------------------

def test_device_nodes_from_the_image_cannot_be_opened(shim):
    """/dev/mem-like and block nodes shipped in the rootfs are refused by the
    device cgroup; the allowed defaults still work."""
    cfg = sh("head -c1 /mem >/dev/null 2>&1; echo mem=$?;"
             " head -c1 /kmsg >/dev/null 2>&1; echo kmsg=$?;"
             " head -c1 /disk >/dev/null 2>&1; echo disk=$?;"
             " head -c1 /mem 2>&1 | grep -c 'Operation not permitted';"
             " head -c1 /dev/zero | wc -c")

    def plant(rootfs):
        os.mknod(rootfs / "mem", 0o20666, os.makedev(1, 1))
        os.mknod(rootfs / "kmsg", 0o20666, os.makedev(1, 11))
        os.mknod(rootfs / "disk", 0o60666, os.makedev(7, 0))  # loop0 / any block device

    res, _ = run_in(shim, cfg, plant)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["mem=1", "kmsg=1", "disk=1", "1", "1"]


def test_mknod_inside_gives_an_unusable_node(shim):
    """CAP_MKNOD (a Docker default) lets mknod succeed; opening the node does not."""
    cfg = sh("mknod /dev/dymem c 1 1 && echo made; head -c1 /dev/dymem 2>&1;"
             " mknod /dev/dyblk b 7 0 && echo made; head -c1 /dev/dyblk 2>&1;"
             " echo done")
    res, _ = run_in(shim, cfg)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "made" and "Operation not permitted" in lines[1]
    assert lines[2] == "made" and "Operation not permitted" in lines[3]
    assert lines[4] == "done"


# --- /proc and pids ----------------------------------------------------------------------------

def test_proc_sys_and_sysrq_trigger_are_read_only(shim):
    # `: >` opens for writing and writes nothing: harmless even if it were allowed
    paths = ["/proc/sys/kernel/printk_ratelimit", "/proc/sys/vm/overcommit_memory"]
    paths += [p for p in ("/proc/sysrq-trigger",) if os.path.exists(p)]  # CONFIG_MAGIC_SYSRQ
    cfg = sh("".join(f"(: > {p}) 2>&1; echo rc=$?;" for p in paths))
    res, _ = run_in(shim, cfg)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 2 * len(paths), lines
    for err, rc in zip(lines[0::2], lines[1::2], strict=True):
        assert "Read-only file system" in err and rc == "rc=1", lines


# Docker's masked files; this host's kernel lacks some (kcore needs CONFIG_PROC_KCORE)
MASKED_FILES = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
                "/proc/latency_stats"]


def test_masked_proc_files_are_empty(shim):
    present = [p for p in MASKED_FILES if os.path.exists(p)]
    assert present
    cfg = sh("".join(f"echo {p}=$(wc -c < {p}) $(stat -c '%t:%T' {p});" for p in present)
             + " echo fw=$(ls -A /sys/firmware | wc -l)")
    res, _ = run_in(shim, cfg)
    assert res.returncode == 0, res.stderr
    # each one is /dev/null bound over the file (char 1:3), reading nothing
    assert res.stdout.split() == [x for p in present for x in (f"{p}=0", "1:3")] + ["fw=0"], \
        res.stderr


def test_host_pids_are_invisible(shim):
    host_pid = os.getpid()
    cfg = sh(f"ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '; echo;"
             f" kill -0 {host_pid} 2>&1; echo rc=$?; test -e /proc/{host_pid} || echo absent")
    res, _ = run_in(shim, cfg)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    pids = [int(p) for p in lines[0].split()]
    assert pids[0] == 1 and max(pids) < 20, pids
    assert lines[-2:] == ["rc=1", "absent"]


# --- config paths --------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["../../escape", "..", "/abs", "a/../../escape"])
def test_path_traversal_id_creates_nothing(shim, tmp_path, bad):
    before = set(os.listdir(tmp_path))
    for verb in (("create", "--bundle", str(shim.bundle())),
                 ("run", "--bundle", str(shim.bundle()))):
        res = shim(*verb, bad)
        assert res.returncode != 0
        assert "invalid container id" in res.stderr
    for verb in (("state",), ("kill",), ("delete", "--force")):
        res = shim(*verb, bad)
        assert res.returncode != 0 and "invalid container id" in res.stderr, verb
    made = set(os.listdir(tmp_path)) - before
    assert all(m.startswith("bundle-") or m in ("root", "rootfs-src") for m in made), made
    assert not os.path.exists(tmp_path / "escape")


@pytest.mark.parametrize("how", ["dotdot", "symlink"])
def test_rootfs_that_is_the_host_root_is_refused(shim, how):
    """root.path resolving to the host's / (by `..` or a symlink) must not become
    the container's root (runc: 'not an absolute path, or a symlink' / pivot_root EBUSY)."""
    cfg = sh("ls /")
    bundle = shim.bundle(cfg)
    if how == "dotdot":
        cfg["root"]["path"] = "../" * 40
    else:
        os.rename(bundle / "rootfs", bundle / "rootfs.real")
        os.symlink("/", bundle / "rootfs")
        cfg["root"]["path"] = "rootfs"
    import json
    (bundle / "config.json").write_text(json.dumps(cfg))
    cid = shim.container()
    res = shim("run", "--bundle", str(bundle), cid)
    assert res.returncode != 0, f"ran with the host's / as rootfs: {res.stdout[:200]!r}"
    assert "rootfs" in res.stderr or "pivot_root" in res.stderr, res.stderr


def test_non_namespaced_sysctl_is_refused(shim):
    """runc refuses sysctls that are not namespaced (kernel.core_pattern is the
    classic host escape). The value written is the host's own: harmless if it went through."""
    with open("/proc/sys/kernel/core_pattern") as f:
        current = f.read().rstrip("\n")
    cfg = sh("true")
    cfg["linux"]["sysctl"] = {"kernel.core_pattern": current}
    cid = shim.container()
    res = shim("run", "--bundle", str(shim.bundle(cfg)), cid)
    assert res.returncode != 0
    assert "kernel.core_pattern" in res.stderr


# --- leaked host file descriptors (runc CVE-2024-21626) -----------------------------------------

def test_container_and_exec_processes_hold_no_host_fds(shim):
    """The init and an exec'd process start with stdio only: no fd to a host dir,
    the state dir, a namespace or a socket the container could use to get out."""
    script = "ls -l /proc/self/fd/ | sed -n 's/.*[0-9] \\([0-9][0-9]*\\) -> \\(.*\\)/\\1 \\2/p'"
    init, _ = run_in(shim, sh(script))
    cid, _ = shim.create(sh("exec sleep 30"))
    shim("start", cid, check=True)
    res = shim("exec", cid, "sh", "-c", script)
    for who, out in (("init", init), ("exec", res)):
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip(), who
        for line in out.stdout.splitlines():
            fd, target = line.split(" ", 1)
            # 0-2: our pipes; 3: the directory ls reads (/proc/self/fd)
            assert int(fd) <= 2 or target.startswith("/proc/"), f"{who} holds fd {line}"


@pytest.mark.parametrize("fd", [3, 4, 5, 6, 7, 8, 9])
def test_cwd_through_proc_fd_magic_link_is_refused(shim, fd):
    """process.cwd=/proc/self/fd/N must never put the process in a host directory."""
    cfg = sh("pwd")
    cfg["process"]["cwd"] = f"/proc/self/fd/{fd}"
    res, _ = run_in(shim, cfg)
    assert "unreachable" not in res.stdout, f"cwd is outside the container: {res.stdout!r}"
    if res.returncode == 0:
        assert res.stdout.strip().startswith("/proc/"), res.stdout


def test_exec_cwd_through_proc_fd_magic_link_is_refused(shim):
    cid, _ = shim.create(sh("exec sleep 30"))
    shim("start", cid, check=True)
    for fd in range(3, 10):
        res = shim("exec", "--cwd", f"/proc/self/fd/{fd}", cid, "pwd")
        assert "unreachable" not in res.stdout, f"exec cwd is outside: {res.stdout!r}"


def test_exec_process_is_not_reachable_through_proc_before_its_execve(shim):
    """A container process watching /proc must never resolve an exec'ing shim child's
    /proc/<pid>/exe (the host's python, CVE-2019-5736's way to overwrite the runtime).
    Probabilistic (a race): without the fix it saw the interpreter in ~1 of 4 execs."""
    watch = ("end=$(( $(date +%s) + 3 )); while [ $(date +%s) -lt $end ]; do"
             " for p in /proc/[0-9]*; do l=$(readlink $p/exe 2>/dev/null);"
             " case \"$l\" in *busybox*|'') ;; *) echo \"$p $l\";; esac; done; done; echo done")
    cid, _ = shim.create(sh("exec sleep 30"))
    shim("start", cid, check=True)
    out = shim.tmp / "watch.out"
    with open(out, "w") as f:
        watcher = subprocess.Popen(
            [shim.binary, "--root", shim.root, "exec", cid, "sh", "-c", watch],
            stdout=f, stderr=f, stdin=subprocess.DEVNULL)
        try:
            for _ in range(10):
                shim("exec", cid, "true", check=True)
        finally:
            assert watcher.wait(30) == 0
    lines = out.read_text().splitlines()
    assert lines == ["done"], f"host binary visible from the container: {lines}"


@pytest.mark.parametrize("path", ["/../../../dy-cgesc", "../../dy-cgesc", "/dockyard/../../x"])
def test_cgroups_path_climbing_out_is_refused(shim, path):
    cfg = sh("true")
    cfg["linux"]["cgroupsPath"] = path
    res, _ = run_in(shim, cfg)
    assert res.returncode != 0 and "must not contain '..'" in res.stderr, res.stderr
    assert not any(os.path.exists(os.path.join("/sys/fs/cgroup", h, "dy-cgesc"))
                   for h in os.listdir("/sys/fs/cgroup"))


def test_device_path_climbing_out_of_dev_is_refused(shim):
    cfg = sh("true")
    cfg["linux"]["devices"] = [{"path": "/dev/../etc/dy-mem", "type": "c", "major": 1,
                                "minor": 1, "fileMode": 0o666}]
    res, bundle = run_in(shim, cfg)
    assert res.returncode != 0 and "linux.devices[0].path" in res.stderr, res.stderr
    assert not os.path.lexists(bundle / "rootfs/etc/dy-mem")


# --- seccomp across syscall ABIs --------------------------------------------------------------

def build_static(tmp_path_factory, name: str) -> str:
    """Compile tests/security/data/<name>.c into a static x86_64 binary (skip without gcc)."""
    import platform
    if platform.machine() != "x86_64" or not shutil.which("gcc"):
        pytest.skip("needs x86_64 and gcc")
    out = tmp_path_factory.mktemp(name) / name
    src = os.path.join(os.path.dirname(__file__), "data", f"{name}.c")
    res = subprocess.run(["gcc", "-static", "-O1", "-o", str(out), src], capture_output=True,
                         text=True, timeout=60)
    if res.returncode != 0:
        pytest.skip(f"cannot build a static binary: {res.stderr[-300:]}")
    return str(out)


@pytest.fixture(scope="module")
def abi_binary(tmp_path_factory) -> str:
    """A static x86_64 program calling mkdir natively, as x32 (nr | 1<<30) and as
    i386 (int 0x80): the classic ways around a filter that checks one ABI."""
    return build_static(tmp_path_factory, "abi")


@pytest.mark.parametrize("arches", [["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                                    ["SCMP_ARCH_X86_64"]])
def test_seccomp_deny_rule_holds_on_every_abi(shim, abi_binary, arches):
    import errno
    cfg = docker_like(["/abi"])
    cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": arches,
                               "syscalls": [{"names": ["mkdir", "mkdirat"],
                                             "action": "SCMP_ACT_ERRNO",
                                             "errnoRet": errno.EDQUOT}]}

    def plant(rootfs):
        shutil.copy(abi_binary, rootfs / "abi")

    res, bundle = run_in(shim, cfg, plant)
    lines = res.stdout.splitlines()
    if len(arches) == 3:
        assert lines == [f"native -1 {errno.EDQUOT}", f"x32 -1 {errno.EDQUOT}",
                         f"i386 -{errno.EDQUOT} {errno.EDQUOT}"], res
    else:  # an ABI the profile does not name kills the process (libseccomp's bad arch)
        assert lines == [f"native -1 {errno.EDQUOT}"] and res.returncode == 128 + 31, res
    for d in ("native", "x32", "i386"):
        assert not os.path.exists(bundle / "rootfs/tmp" / d)


def test_docker_profile_argument_filters_hold(shim, tmp_path_factory):
    """apid's Docker profile in the real shim: clone with namespace flags (also with
    junk in the upper 32 bits), unshare, AF_VSOCK sockets and personality flags are
    refused; their harmless forms work."""
    import platform

    from dockyard.apid import translate
    binary = build_static(tmp_path_factory, "filters")
    spec = translate.build_spec(translate.SpecInputs(
        container_id="ab" * 32, config={"Cmd": ["/filters"]}, host_config={},
        hostname="dy", arch="amd64", kernel=platform.release()))
    cfg = docker_like(["/filters"])
    cfg["linux"]["seccomp"] = spec["linux"]["seccomp"]
    res, _ = run_in(shim, cfg, lambda rootfs: shutil.copy(binary, rootfs / "filters"))
    assert res.returncode == 0, res
    got = dict(line.split(" ", 1) for line in res.stdout.splitlines())
    assert got == {"clone-plain": "ok", "clone-newuser": "1", "clone-newns-highbits": "1",
                   "unshare-user": "1", "socket-vsock": "1", "socket-unix": "0",
                   "personality-query": "0", "personality-rie": "1"}, got


def test_cgroup_release_agent_and_uevent_helper_are_out_of_reach(shim):
    """The classic escapes through the kernel's usermode helpers: a cgroup v1
    release_agent (CVE-2022-0492) and /sys/kernel/uevent_helper. /sys and
    /sys/fs/cgroup are read-only and mounting a fresh hierarchy needs CAP_SYS_ADMIN.
    (`: >` writes nothing: harmless even if it were allowed.)"""
    cfg = sh("for f in /sys/fs/cgroup/*/release_agent /sys/kernel/uevent_helper"
             " /sys/fs/cgroup/*/notify_on_release; do"
             "   [ -e $f ] || continue; (: > $f) 2>/dev/null && echo WRITABLE $f; done;"
             " for d in /sys/fs/cgroup/*/; do mkdir $d/dy-sec 2>/dev/null && echo MKDIR $d; done;"
             " mkdir -p /tmp/cg && mount -t cgroup -o memory cgroup /tmp/cg 2>/dev/null"
             " && echo MOUNTED; echo checked $(ls -d /sys/fs/cgroup/*/ | wc -l)"
             " $(ls /sys/kernel/uevent_helper 2>/dev/null | wc -l)")
    res, _ = run_in(shim, cfg)
    assert res.returncode == 0, res.stderr
    words = res.stdout.split()
    assert words[0] == "checked" and len(words) == 3, res.stdout
    assert int(words[1]) >= 3, "the container sees no cgroup hierarchies: nothing was tried"
