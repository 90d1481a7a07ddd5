"""Kernel constants the shim passes to libc (values from the Linux uapi headers).

Only plain integers live here, so importing this module costs nothing; the
calls themselves are in `syscalls.py`.
"""

from __future__ import annotations

import os as _os

MACHINE = _os.uname().machine

# --- clone(2)/unshare(2)/setns(2) namespace flags (linux/sched.h)
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# --- mount(2) flags (linux/mount.h)
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

# umount2(2)
MNT_FORCE = 1
MNT_DETACH = 2
MNT_EXPIRE = 4
UMOUNT_NOFOLLOW = 8

# --- prctl(2) options (linux/prctl.h)
PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_GET_KEEPCAPS = 7
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_GET_SECCOMP = 21
PR_SET_SECCOMP = 22
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_IS_SET = 1
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_LOWER = 3
PR_CAP_AMBIENT_CLEAR_ALL = 4

# --- capget(2)/capset(2) (linux/capability.h)
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
LINUX_CAPABILITY_VERSION_3 = _LINUX_CAPABILITY_VERSION_3

# --- seccomp(2) (linux/seccomp.h)
SECCOMP_MODE_FILTER = 2
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1 << 0
SECCOMP_FILTER_FLAG_LOG = 1 << 1
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 1 << 2
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_FILTER_FLAG_TSYNC_ESRCH = 1 << 4
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5

# --- bpf(2) commands, program and attach types (linux/bpf.h)
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_OVERRIDE = 1 << 0
BPF_F_ALLOW_MULTI = 1 << 1
BPF_F_REPLACE = 1 << 2

# --- syscall numbers without a glibc wrapper, per architecture
_SYSCALL_NRS = {
    "x86_64": {"seccomp": 317, "bpf": 321, "pivot_root": 155, "setns": 308,
               "pidfd_open": 434, "close_range": 436},
    "aarch64": {"seccomp": 277, "bpf": 280, "pivot_root": 41, "setns": 268,
                "pidfd_open": 434, "close_range": 436},
}
SYS_seccomp = _SYSCALL_NRS.get(MACHINE, {}).get("seccomp", -1)
SYS_bpf = _SYSCALL_NRS.get(MACHINE, {}).get("bpf", -1)
SYS_pivot_root = _SYSCALL_NRS.get(MACHINE, {}).get("pivot_root", -1)
SYS_pidfd_open = _SYSCALL_NRS.get(MACHINE, {}).get("pidfd_open", -1)
SYS_close_range = _SYSCALL_NRS.get(MACHINE, {}).get("close_range", -1)
