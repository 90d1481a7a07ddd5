"""apid/devices.py (reading host device nodes) and translate.with_devices (the spec part)."""

from __future__ import annotations

import os
import stat

import pytest
from dockyard.apid import devices, translate

from dockyard import errdefs


def spec_for(devs=(), host_config=None):
    cfg = translate.merge_config({}, {"Cmd": ["sh"]})
    return translate.build_spec(translate.SpecInputs(
        container_id="ab" * 32, config=cfg, host_config=dict(host_config or {}),
        hostname="abababababab", arch="amd64", kernel="6.1.0", devices=list(devs)))


def test_device_from_path_reads_the_host_node():
    d = devices.device_from_path("/dev/null", "/dev/mynull", "r")
    st = os.stat("/dev/null")
    assert (d.path, d.type, d.major, d.minor, d.access) == ("/dev/mynull", "c", 1, 3, "r")
    assert d.file_mode == stat.S_IMODE(st.st_mode) and (d.uid, d.gid) == (st.st_uid, st.st_gid)


def test_symlink_followed_and_directory_walked(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    (tmp_path / "sub").mkdir()
    os.mknod(tmp_path / "a", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(tmp_path / "sub" / "b", 0o600 | stat.S_IFBLK, os.makedev(7, 200))
    (tmp_path / "file").write_text("x")
    os.symlink(tmp_path / "a", tmp_path / "link")
    [linked] = devices.devices_from_mapping(str(tmp_path / "link"), "/dev/l", "rwm")
    assert (linked.path, linked.major, linked.minor) == ("/dev/l", 1, 3)
    found = devices.devices_from_mapping(str(tmp_path), "/dev/d", "rw")
    assert sorted((d.path, d.type) for d in found) == [("/dev/d/a", "c"), ("/dev/d/sub/b", "b")]


def test_errors_in_mobys_words(tmp_path):
    with pytest.raises(errdefs.EngineError) as err:
        devices.devices_from_mapping("/dev/dy-nope", "/dev/x", "rwm")
    assert str(err.value) == ('error gathering device information while adding custom device '
                              '"/dev/dy-nope": no such file or directory')
    assert type(err.value) is errdefs.EngineError  # a 500, as dockerd answers
    (tmp_path / "f").write_text("x")
    for path in (tmp_path / "f", tmp_path):  # a file; a directory without nodes
        with pytest.raises(errdefs.EngineError, match=": not a device node$"):
            devices.devices_from_mapping(str(path), "/dev/x", "rwm")


def test_mapping_checks():
    assert devices.check_mappings([{"PathOnHost": "/dev/null"}]) == [
        {"PathOnHost": "/dev/null", "PathInContainer": "/dev/null", "CgroupPermissions": "rwm"}]
    for bad, message in (({"PathOnHost": "/dev/null", "CgroupPermissions": "rx"},
                          "bad mode specified: rx"),
                         ({"PathOnHost": "/dev/null", "PathInContainer": "x"},
                          "x is not an absolute path"),
                         ({"PathOnHost": ""}, "PathOnHost is empty"),
                         ("nope", "invalid device mapping")):
        with pytest.raises(errdefs.InvalidArgument, match=message):
            devices.check_mappings([bad])


def test_spec_gets_nodes_and_exact_rules():
    devs = [devices.ContainerDevice("/dev/lc", "c", 10, 237, 0o600, 0, 6, "r"),
            devices.ContainerDevice("/dev/blk", "b", 7, 1, 0o660, 0, 6, "rw"),
            devices.ContainerDevice("/dev/fifo", "p", 0, 0, 0o644, 0, 0, "rwm")]
    spec = spec_for(devs, {"DeviceCgroupRules": ["c 4:* rw"]})
    assert spec["linux"]["devices"] == [
        {"path": "/dev/lc", "type": "c", "major": 10, "minor": 237, "fileMode": 0o600,
         "uid": 0, "gid": 6},
        {"path": "/dev/blk", "type": "b", "major": 7, "minor": 1, "fileMode": 0o660,
         "uid": 0, "gid": 6},
        {"path": "/dev/fifo", "type": "p", "major": 0, "minor": 0, "fileMode": 0o644,
         "uid": 0, "gid": 0}]
    rules = spec["linux"]["resources"]["devices"]
    # after dockerd's defaults (deny all ... deny fuse), the devices, then the rules
    assert rules[-3:] == [
        {"allow": True, "type": "c", "major": 10, "minor": 237, "access": "r"},
        {"allow": True, "type": "b", "major": 7, "minor": 1, "access": "rw"},
        {"allow": True, "type": "c", "major": 4, "access": "rw"}]
    assert rules[0] == {"allow": False, "access": "rwm"}
    assert "devices" not in spec_for()["linux"]


def test_privileged_keeps_allow_all_and_gets_nodes():
    devs = [devices.ContainerDevice("/dev/x", "c", 10, 237, 0o600, 0, 0, "rwm")]
    spec = spec_for(devs, {"Privileged": True, "DeviceCgroupRules": ["c 1:1 r"]})
    assert spec["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert [d["path"] for d in spec["linux"]["devices"]] == ["/dev/x"]


def test_device_cgroup_rule_format():
    with pytest.raises(errdefs.InvalidArgument, match="invalid device cgroup rule format"):
        spec_for((), {"DeviceCgroupRules": ["c 1:3 rx"]})


def test_device_requests_have_no_driver():
    with pytest.raises(errdefs.EngineError) as err:
        spec_for((), {"DeviceRequests": [{"Driver": "", "Count": -1,
                                          "Capabilities": [["gpu"]]}]})
    assert type(err.value) is errdefs.EngineError  # 500, as dockerd's start answers
    assert str(err.value) == 'could not select device driver "" with capabilities: [[gpu]]'
    with pytest.raises(errdefs.EngineError, match=r'"nvidia" with capabilities: '
                                                   r'\[\[gpu utility\] \[compute\]\]'):
        spec_for((), {"DeviceRequests": [{"Driver": "nvidia",
                                          "Capabilities": [["gpu", "utility"], ["compute"]]}]})
    spec_for((), {"DeviceRequests": []})
