"""The fast tar header parser in apply.py agrees with tarfile's on every header
kind (and hands the unusual ones to tarfile); the staging dir's chattr +T."""

from __future__ import annotations

import io
import subprocess
import tarfile

import pytest
from dockyard.managerd.images.apply import _TarInfo, spread_inodes
from helpers import images as im

FIELDS = [k for k in tarfile.TarInfo.__slots__ if k != "tarfile"]


def _entries(fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, kind in [("a/" * 60 + "long-name", tarfile.REGTYPE), ("d/", tarfile.DIRTYPE),
                           ("d/p" + "x" * 90 + "/" + "y" * 80, tarfile.REGTYPE),
                           ("sym", tarfile.SYMTYPE), ("hard", tarfile.LNKTYPE),
                           ("null", tarfile.CHRTYPE), ("fifo", tarfile.FIFOTYPE),
                           ("ünï-çødé", tarfile.REGTYPE), ("big-uid", tarfile.REGTYPE)]:
            ti = tarfile.TarInfo(name)
            ti.type, ti.uid, ti.gid, ti.mode, ti.mtime = kind, 1000, 2000, 0o4755, 1234567890
            ti.uname, ti.gname = "user", "group"
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                ti.linkname = "a/" * 55 + "target"
            if kind == tarfile.CHRTYPE:
                ti.devmajor, ti.devminor = 1, 3
            if name == "big-uid":
                ti.uid = 1 << 40  # pax header (or base-256 in GNU format)
            if fmt == tarfile.PAX_FORMAT and kind == tarfile.SYMTYPE:
                ti.pax_headers = {"SCHILY.xattr.user.k": "v"}
            data = b"x" * 700 if kind == tarfile.REGTYPE else b""
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _parse(data: bytes, cls) -> list[dict]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:", tarinfo=cls) as tf:
        return [{k: getattr(ti, k, None) for k in FIELDS} for ti in tf]


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_fast_headers_match_tarfile(fmt):
    if fmt == tarfile.USTAR_FORMAT:  # no long names, no big numbers in plain ustar
        data = im.tar_layer([im.dir("etc"), im.file("etc/f", b"abc", mode=0o600),
                             im.symlink("etc/l", "f")])
    else:
        data = _entries(fmt)
    expected = _parse(data, tarfile.TarInfo)
    assert len(expected) > 2
    assert _parse(data, _TarInfo) == expected


def test_bad_checksum_still_refused():
    data = bytearray(im.tar_layer([im.file("f", b"abc")]))
    data[0] ^= 1  # name changed, checksum not
    with pytest.raises(tarfile.ReadError):
        _parse(bytes(data), _TarInfo)


def test_spread_inodes(tmp_path):
    d = tmp_path / "staging"
    d.mkdir()
    if not spread_inodes(str(d)):
        pytest.skip("filesystem without FS_TOPDIR_FL")
    out = subprocess.run(["lsattr", "-d", str(d)], capture_output=True, text=True, check=True)
    assert "T" in out.stdout.split()[0]
    assert spread_inodes(str(d))  # idempotent
    assert not spread_inodes(str(tmp_path / "missing"))
