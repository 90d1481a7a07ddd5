"""seccomp filters installed for real, each in a fresh python child process.

The child compiles the profile with `dockyard.shim.seccomp`, installs it
(after no_new_privs, as the container init does) and reports what its
syscalls returned; the parent checks exit signals (SIGSYS for KILL/TRAP).
"""

from __future__ import annotations

import errno
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from dockyard.shim.seccomp import compiler

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(60)]

SRC = str(Path(__file__).resolve().parents[2] / "src")
ARCHES = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]

PRELUDE = f"""
import ctypes, errno, json, os, sys
sys.path.insert(0, {SRC!r})
from dockyard.shim import seccomp
from dockyard.shim._sys.syscalls import default
sc = default()
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def call(fn, *args):
    ctypes.set_errno(0)
    ret = fn(*args)
    return ret if ret != -1 else -ctypes.get_errno()

def mkdir(path):
    try:
        os.mkdir(path)
        os.rmdir(path)
        return 0
    except OSError as e:
        return -e.errno

def seccomp_status():
    with open("/proc/self/status") as f:
        return [l.split()[1] for l in f if l.startswith("Seccomp:")][0]
"""


def run(profile: dict, body: str, flags: list[str] | None = None, nnp: bool = True,
        tmp: Path | None = None) -> tuple[int, dict | None, str]:
    setup = (f"PROFILE = {json.dumps(profile)}\nTMP = {str(tmp or '/tmp')!r}\n"
             + ("sc.prctl(38, 1)\n" if nnp else "")
             + f"seccomp.install_filter(seccomp.compile_filter(PROFILE), {flags!r})\n")
    proc = subprocess.run([sys.executable, "-I", "-S", "-c",
                           PRELUDE + setup + textwrap.dedent(body)],
                          capture_output=True, text=True, timeout=30)
    lines = proc.stdout.strip().splitlines()
    return proc.returncode, (json.loads(lines[-1]) if lines else None), proc.stderr


def test_blocked_calls_fail_with_the_profiles_errno(tmp_path):
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ARCHES, "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["rmdir", "unlinkat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS},
        {"names": ["no_such_syscall"], "action": "SCMP_ACT_KILL"}]}
    rc, res, err = run(profile, """
        os.rmdir(TMP) if False else None
        try:
            os.rmdir(TMP + "/sub")
            r = 0
        except OSError as e:
            r = -e.errno
        print(json.dumps({"mkdir": mkdir(TMP + "/x"), "rmdir": r, "status": seccomp_status(),
                          "getpid": os.getpid() > 0}))
    """, tmp=tmp_path)
    assert rc == 0, err
    assert res == {"mkdir": -errno.EPERM, "rmdir": -errno.EROFS, "status": "2", "getpid": True}
    assert not (tmp_path / "x").exists()


def test_argument_conditions(tmp_path):
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ARCHES, "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES,
         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_NE"},
                  {"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_NE"}]},
    ]}
    # two conditions on one argument are ORed (runc): x != 0 OR x != 0xffffffff
    # holds for every x, so everything is refused
    rc, res, err = run(profile, """
        print(json.dumps({v: call(libc.personality, ctypes.c_ulong(v)) for v in (0, 8)}))
    """)
    assert rc == 0, err
    assert res == {"0": -errno.EACCES, "8": -errno.EACCES}
    profile["syscalls"][0]["args"] = [{"index": 0, "value": 8, "op": "SCMP_CMP_NE"}]
    rc, res, err = run(profile, """
        print(json.dumps({v: call(libc.personality, ctypes.c_ulong(v)) for v in (0, 8, 0xffffffff)}))
    """)
    assert rc == 0, err
    assert res["0"] == -errno.EACCES and res["8"] >= 0 and res[str(0xFFFFFFFF)] == -errno.EACCES
    profile["syscalls"] = [{"names": ["socket"], "action": "SCMP_ACT_ERRNO",
                            "errnoRet": errno.EAFNOSUPPORT,
                            "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}]}]
    rc, res, err = run(profile, """
        res = {}
        for fam in (40, 1):
            fd = call(libc.socket, fam, 1, 0)
            res[fam] = fd if fd < 0 else "ok"
        print(json.dumps(res))
    """)
    assert rc == 0, err
    assert res == {"40": -errno.EAFNOSUPPORT, "1": "ok"}  # AF_VSOCK refused, AF_UNIX fine


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL",
                                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP"])
def test_kill_and_trap_end_the_process_with_sigsys(action):
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ARCHES,
               "syscalls": [{"names": ["getppid"], "action": action}]}
    rc, res, err = run(profile, """
        print(json.dumps({"installed": seccomp_status()}), flush=True)
        os.getppid()
        print(json.dumps({"survived": True}))
    """)
    assert rc == -signal.SIGSYS, err
    assert res == {"installed": "2"}


def test_log_allows():
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ARCHES,
               "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_LOG"}]}
    rc, res, err = run(profile, "print(json.dumps({'ppid': os.getppid() > 0}))",
                       flags=["SECCOMP_FILTER_FLAG_LOG"])
    assert (rc, res) == (0, {"ppid": True}), err


def test_x32_syscalls_are_killed_unless_listed():
    body = """
        print(json.dumps({"before": True}), flush=True)
        r = call(libc.syscall, ctypes.c_long(0x40000000 | 39))  # x32 getpid
        print(json.dumps({"x32": r}))
    """
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"]}
    rc, res, err = run(profile, body)
    assert rc == -signal.SIGSYS and res == {"before": True}, err
    profile["architectures"] = ARCHES
    rc, res, err = run(profile, body)
    assert rc == 0, err
    # allowed through the filter: a pid, or ENOSYS on kernels built without x32
    assert res["x32"] > 0 or res["x32"] == -errno.ENOSYS


def test_tsync_filters_every_thread(tmp_path):
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ARCHES,
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                             "errnoRet": errno.EDQUOT}]}
    code = """
        import threading
        go, out = threading.Event(), {}
        def worker():
            go.wait()
            out["thread"] = mkdir(TMP + "/t")
        t = threading.Thread(target=worker)
        t.start()
        sc.prctl(38, 1)
        seccomp.install_filter(seccomp.compile_filter(PROFILE), ["SECCOMP_FILTER_FLAG_TSYNC"])
        go.set()
        t.join()
        out["main"] = mkdir(TMP + "/m")
        print(json.dumps(out))
    """
    proc = subprocess.run([sys.executable, "-I", "-S", "-c",
                           PRELUDE + f"PROFILE = {json.dumps(profile)}\nTMP = {str(tmp_path)!r}\n"
                           + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"thread": -errno.EDQUOT, "main": -errno.EDQUOT}


def test_without_no_new_privs_or_cap_sys_admin_install_is_refused():
    code = """
        # keep every capability but CAP_SYS_ADMIN (21), and no no_new_privs
        _, full, _ = sc.capget()
        sc.capset(full & ~(1 << 21), full & ~(1 << 21), 0)
        try:
            seccomp.install_filter(seccomp.compile_filter(PROFILE), [])
            print(json.dumps({"installed": True}))
        except PermissionError as e:
            print(json.dumps({"error": str(e), "status": seccomp_status()}))
    """
    proc = subprocess.run([sys.executable, "-I", "-S", "-c",
                           PRELUDE + "PROFILE = {'defaultAction': 'SCMP_ACT_ALLOW'}\n"
                           + textwrap.dedent(code)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert "no_new_privs or CAP_SYS_ADMIN" in res["error"] and res["status"] == "0"


def test_docker_sized_allow_list_runs_python_and_blocks_the_rest():
    blocked = {"mount", "umount2", "reboot", "kexec_load", "unshare", "setns", "bpf",
               "clone3", "personality", "pivot_root", "swapon", "swapoff"}
    names = [n for n in compiler.syscall_table("x86_64") if n not in blocked]
    i386 = [n for n in compiler.syscall_table("i386") if n not in blocked]
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.EPERM,
               "architectures": ARCHES,
               "syscalls": [{"names": sorted(set(names) | set(i386)), "action": "SCMP_ACT_ALLOW"},
                            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO",
                             "errnoRet": errno.ENOSYS},
                            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]}]}
    rc, res, err = run(profile, """
        import subprocess
        out = subprocess.run(["/bin/true"]).returncode  # fork+exec under the filter
        print(json.dumps({
            "umount2": call(libc.umount2, b"/nonexistent-dockyard", 0),
            "unshare": call(libc.unshare, 0x20000),
            "clone3": call(libc.syscall, ctypes.c_long(435), None, ctypes.c_long(0)),
            "personality0": call(libc.personality, ctypes.c_ulong(0)) >= 0,
            "personality8": call(libc.personality, ctypes.c_ulong(8)),
            "child": out, "status": seccomp_status()}))
    """)
    assert rc == 0, err
    assert res == {"umount2": -errno.EPERM, "unshare": -errno.EPERM, "clone3": -errno.ENOSYS,
                   "personality0": True, "personality8": -errno.EPERM, "child": 0,
                   "status": "2"}


def test_syscalls_newer_than_the_profile_fail_with_enosys():
    # runc's stub: libc falls back from ENOSYS, not from EPERM
    table = compiler.syscall_table("x86_64")
    old = sorted(n for n, nr in table.items() if nr < 425 and n not in ("acct", "syslog"))
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ARCHES,
               "syscalls": [{"names": old, "action": "SCMP_ACT_ALLOW"}]}
    rc, res, err = run(profile, """
        print(json.dumps({"acct": call(libc.acct, None),
                          "cachestat": call(libc.syscall, ctypes.c_long(451), 0, 0, 0, 0),
                          "pid": os.getpid() > 0}))
    """)
    assert rc == 0, err
    assert res == {"acct": -errno.EPERM, "cachestat": -errno.ENOSYS, "pid": True}
