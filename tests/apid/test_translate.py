"""apid/translate.py: Docker create bodies -> OCI specs (pure, one option per concern)."""

from __future__ import annotations

import pytest
from dockyard.apid import seccomp, translate

from dockyard import errdefs


def spec_for(config=None, host_config=None, **kw):
    cfg = translate.merge_config(dict(config or {}), {"Cmd": ["sh"], "Env": ["PATH=/bin"]})
    cfg.setdefault("Hostname", "abcdef012345")
    return translate.build_spec(translate.SpecInputs(
        container_id="abcdef0123456789" * 4, config=cfg, host_config=dict(host_config or {}),
        hostname=cfg["Hostname"], arch="amd64", kernel="6.1.0", **kw))


def test_default_caps_mounts_paths_devices():
    spec = spec_for()
    caps = spec["process"]["capabilities"]
    assert caps["bounding"] == translate.DEFAULT_CAPS and len(caps["effective"]) == 14
    assert "inheritable" not in caps and "ambient" not in caps
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests == ["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue",
                     "/dev/shm"]
    shm = spec["mounts"][-1]
    assert f"size={64 << 20}" in shm["options"] and "mode=1777" in shm["options"]
    assert "/proc/kcore" in spec["linux"]["maskedPaths"]
    assert "/proc/sys" in spec["linux"]["readonlyPaths"]
    devs = spec["linux"]["resources"]["devices"]
    assert devs[0] == {"allow": False, "access": "rwm"}
    assert {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"} in devs
    assert spec["linux"]["cgroupsPath"].endswith("/" + "abcdef0123456789" * 4)
    assert {n["type"] for n in spec["linux"]["namespaces"]} == {"mount", "network", "uts", "pid",
                                                                  "ipc"}
    assert spec["linux"]["sysctl"]["net.ipv4.ip_unprivileged_port_start"] == "0"


def test_process_env_args_cwd_tty():
    spec = spec_for({"Cmd": ["echo", "hi"], "Env": ["A=1"], "Tty": True, "WorkingDir": "/tmp"})
    proc = spec["process"]
    assert proc["args"] == ["echo", "hi"]
    assert "HOSTNAME=abcdef012345" in proc["env"] and "TERM=xterm" in proc["env"]
    assert "A=1" in proc["env"] and "PATH=/bin" in proc["env"]
    assert proc["cwd"] == "/tmp" and proc["terminal"] is True


def test_merge_config_entrypoint_resets_cmd():
    image = {"Entrypoint": ["/init"], "Cmd": ["serve"], "Env": ["PATH=/x", "A=1"]}
    merged = translate.merge_config({"Entrypoint": ["/bin/sh"], "Env": ["A=2"]}, image)
    assert translate.command_of(merged) == ["/bin/sh"]
    assert merged["Env"] == ["PATH=/x", "A=2"]
    merged = translate.merge_config({"Cmd": ["x"]}, image)
    assert translate.command_of(merged) == ["/init", "x"]
    with pytest.raises(errdefs.InvalidArgument, match="No command specified"):
        translate.command_of(translate.merge_config({}, {}))


def test_user_lookup_from_image_files():
    passwd = "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n"
    group = "root:x:0:\nalice:x:1000:\nwheel:x:10:alice,bob\n"
    assert translate.resolve_user("alice", passwd, group) == (1000, 1000, [1000, 10])
    assert translate.resolve_user("1000:10", passwd, group) == (1000, 10, [10])
    assert translate.resolve_user("", passwd, group) == (0, 0, [0])
    with pytest.raises(errdefs.InvalidArgument, match="unable to find user bob"):
        translate.resolve_user("bob", passwd, group)


def test_cap_add_drop_all_and_privileged():
    assert translate.effective_caps(["net_admin"], ["CAP_CHOWN"]) == [
        c for c in translate.DEFAULT_CAPS if c != "CAP_CHOWN"] + ["CAP_NET_ADMIN"]
    assert translate.effective_caps(["NET_ADMIN"], ["ALL"]) == ["CAP_NET_ADMIN"]
    assert len(translate.effective_caps(["ALL"], None)) == 41
    with pytest.raises(errdefs.InvalidArgument):
        translate.effective_caps(["bogus"], None)
    spec = spec_for(host_config={"Privileged": True})
    assert len(spec["process"]["capabilities"]["bounding"]) == 41
    assert spec["linux"]["maskedPaths"] == [] and "seccomp" not in spec["linux"]
    assert spec["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]


def test_seccomp_default_and_unconfined_and_nnp():
    spec = spec_for()
    sc = spec["linux"]["seccomp"]
    assert sc["defaultAction"] == "SCMP_ACT_ERRNO" and sc["defaultErrnoRet"] == 1
    assert sc["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    names = {n for r in sc["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and "args" not in r
             for n in r["names"]}
    assert "read" in names and "arch_prctl" in names and "mount" not in names
    assert "ptrace" in names  # minKernel 4.8
    clone3 = [r for r in sc["syscalls"] if r["names"] == ["clone3"]]
    assert clone3 and clone3[0]["errnoRet"] == 38
    spec = spec_for(host_config={"CapAdd": ["SYS_ADMIN"]})
    names = {n for r in spec["linux"]["seccomp"]["syscalls"] for n in r["names"]
             if r["action"] == "SCMP_ACT_ALLOW" and "args" not in r}
    assert "mount" in names
    spec = spec_for(host_config={"SecurityOpt": ["seccomp=unconfined", "no-new-privileges"]})
    assert "seccomp" not in spec["linux"] and spec["process"]["noNewPrivileges"] is True
    assert len(seccomp.default_profile()["syscalls"]) == 31


def test_binds_mounts_tmpfs_readonly():
    spec = spec_for(host_config={
        "Binds": ["/srv/data:/data:ro"], "Tmpfs": {"/run": "size=1m"}, "ReadonlyRootfs": True,
        "Mounts": [{"Type": "tmpfs", "Target": "/scratch", "TmpfsOptions": {"SizeBytes": 4096}}],
        "ShmSize": 1 << 20})
    by = {m["destination"]: m for m in spec["mounts"]}
    assert by["/data"]["type"] == "bind" and "ro" in by["/data"]["options"]
    assert "rbind" in by["/data"]["options"]
    assert by["/run"]["type"] == "tmpfs" and "size=1m" in by["/run"]["options"]
    assert "size=4096" in by["/scratch"]["options"]
    assert f"size={1 << 20}" in by["/dev/shm"]["options"]
    assert spec["root"]["readonly"] is True
    with pytest.raises(errdefs.InvalidArgument):
        spec_for(host_config={"Binds": ["relative:/x"]})


def test_resources_and_ulimits():
    spec = spec_for(host_config={"Memory": 64 << 20, "NanoCpus": 500_000_000, "CpuShares": 512,
                                 "CpusetCpus": "0", "PidsLimit": 50,
                                 "Ulimits": [{"Name": "nofile", "Soft": 100, "Hard": 200}]})
    res = spec["linux"]["resources"]
    assert res["memory"] == {"limit": 64 << 20, "swap": 128 << 20}
    assert res["cpu"] == {"period": 100000, "quota": 50000, "shares": 512, "cpus": "0"}
    assert res["pids"] == {"limit": 50}
    assert spec["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]
    with pytest.raises(errdefs.InvalidArgument, match="Minimum memory limit"):
        spec_for(host_config={"Memory": 1024})


def test_init_wraps_command_and_etc_files():
    spec = spec_for({"Cmd": ["sleep", "1"]}, {"Init": True}, init_path="/usr/bin/tini-static",
                    etc_files={"/etc/hosts": "/c/hosts", "/etc/hostname": "/c/hostname",
                               "/etc/resolv.conf": "/c/resolv.conf"})
    assert spec["process"]["args"] == ["/sbin/docker-init", "--", "sleep", "1"]
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests[-4:] == ["/etc/resolv.conf", "/etc/hostname", "/etc/hosts", "/sbin/docker-init"]


def test_hosts_and_resolv_files():
    hosts = translate.hosts_file("abc", "172.17.0.2", ["db:10.0.0.5"])
    assert hosts.splitlines()[0] == "127.0.0.1\tlocalhost"
    assert "10.0.0.5\tdb" in hosts and hosts.endswith("172.17.0.2\tabc\n")
    resolv = translate.resolv_conf("nameserver 127.0.0.53\nsearch lan\n")
    assert "nameserver 8.8.8.8" in resolv and "127.0.0.53" not in resolv
    assert "nameserver 1.1.1.1" in translate.resolv_conf("nameserver 10.0.0.1\n", ["1.1.1.1"])


def test_parse_signal_and_bytes():
    assert translate.parse_signal("SIGTERM") == 15 and translate.parse_signal("kill") == 9
    assert translate.parse_signal("10") == 10 and translate.parse_signal("SIGRTMIN+1") == 35
    with pytest.raises(errdefs.InvalidArgument):
        translate.parse_signal("NOPE")
    assert translate.parse_bytes("64m") == 64 << 20
