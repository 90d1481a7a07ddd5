import io
import tarfile

import pytest

from dockyard import tarsafe


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> tarfile.TarFile:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return tarfile.open(fileobj=buf)


def _file(name: str, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.fixture(params=[True, False], ids=["native", "fallback"])
def filters(request, monkeypatch):
    """Run each test with tarfile's own filters and with the 3.11.2 fallback."""
    if request.param and not tarsafe.HAS_FILTERS:
        pytest.skip("this Python's tarfile has no extraction filters")
    monkeypatch.setattr(tarsafe, "HAS_FILTERS", request.param)


@pytest.mark.parametrize("name", ["../escape", "a/../../escape"])
def test_untrusted_entry_leaving_dest_is_refused(tmp_path, filters, name):
    dest = tmp_path / "dest"
    dest.mkdir()
    tar = _tar((_file(name), b"x"))
    with pytest.raises(tarfile.TarError):
        tarsafe.extract(tar, tar.getmembers()[0], str(dest), trusted=False)
    assert not (tmp_path / "escape").exists()


def test_untrusted_absolute_name_lands_inside(tmp_path, filters):
    tar = _tar((_file("/abs.txt"), b"hi"))
    tarsafe.extract(tar, tar.getmembers()[0], str(tmp_path), trusted=False)
    assert (tmp_path / "abs.txt").read_bytes() == b"hi"


def test_untrusted_write_through_a_symlink_out_is_refused_setuid_cleared(tmp_path, filters):
    dest = tmp_path / "dest"
    dest.mkdir()
    tar = _tar((_link("out", ".."), b""), (_file("out/escape"), b"x"),
               (_file("suid", 0o4755), b"#!"))
    out, through, suid = tar.getmembers()
    tarsafe.extract(tar, out, str(dest), trusted=False)  # a symlink is content
    with pytest.raises(tarfile.TarError):
        tarsafe.extract(tar, through, str(dest), trusted=False)
    assert not (tmp_path / "escape").exists()
    tarsafe.extract(tar, suid, str(dest), trusted=False)
    assert (dest / "suid").stat().st_mode & 0o7777 == 0o755


def test_trusted_keeps_modes(tmp_path, filters):
    tar = _tar((_file("suid", 0o4755), b"#!"))
    tarsafe.extract(tar, tar.getmembers()[0], str(tmp_path), trusted=True)
    assert (tmp_path / "suid").stat().st_mode & 0o7777 == 0o4755
