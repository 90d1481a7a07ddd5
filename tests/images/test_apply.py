"""Layer application: entry types, attributes, whiteouts, and refusal of escapes."""

from __future__ import annotations

import io
import os
import stat

import pytest
from dockyard.managerd.images.apply import OVERLAY_OPAQUE_XATTR, LayerError, apply_layer
from helpers import images as im

T = im.MTIME


def apply(entries_or_tar, root, compression="none", **kw):
    tar = entries_or_tar if isinstance(entries_or_tar, bytes) else im.tar_layer(entries_or_tar)
    blob = im.compress(tar, compression)
    res = apply_layer(io.BytesIO(blob), root, compression=compression, layer="sha256:test", **kw)
    assert res.diff_id == im.sha256(tar)
    return res


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_entry_types_and_attributes(tmp_path, compression):
    root = tmp_path / "root"
    root.mkdir()
    res = apply([
        im.dir("etc", mode=0o750, uid=5, gid=6),
        im.file("etc/conf", "hello", mode=0o640, uid=7, gid=8,
                xattrs={"user.note": "v1"}),
        im.file("bin/tool", b"x" * 3_000_000, mode=0o4755),  # parent dir missing in the tar
        im.symlink("bin/link", "/etc/conf"),
        im.symlink("etc/rel", "../bin/tool"),
        im.hardlink("etc/hard", "etc/conf"),
        im.device("dev/null", "char", 1, 3),
        im.device("dev/loop0", "block", 7, 0, mode=0o660),
    ], root, compression)
    assert res.size == 5 + 3_000_000
    st = os.lstat(root / "etc")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime) == (0o750, 5, 6, T)
    st = os.lstat(root / "etc/conf")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime) == (0o640, 7, 8, T)
    assert (root / "etc/conf").read_text() == "hello"
    assert os.getxattr(root / "etc/conf", "user.note") == b"v1"
    assert stat.S_IMODE(os.lstat(root / "bin/tool").st_mode) == 0o4755
    assert os.readlink(root / "bin/link") == "/etc/conf"
    assert os.lstat(root / "bin/link").st_mtime == T
    assert os.lstat(root / "etc/hard").st_ino == os.lstat(root / "etc/conf").st_ino
    st = os.lstat(root / "dev/null")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    assert stat.S_ISBLK(os.lstat(root / "dev/loop0").st_mode)


def test_busybox_layer(tmp_path):
    apply(im.busybox_tar(), tmp_path)
    assert os.path.islink(tmp_path / "bin/sh")
    assert os.access(tmp_path / "bin/busybox", os.X_OK)


def lower_tree(root):
    apply([im.dir("a"), im.file("a/keep", "k"), im.file("a/gone", "g"), im.dir("b"),
           im.file("b/old", "o"), im.file("top", "t")], root)


def test_whiteouts_native(tmp_path):
    lower_tree(tmp_path)
    apply([im.whiteout("a/gone"), im.whiteout("top"), im.opaque("b"), im.file("b/new", "n"),
           im.file("c", "c"), im.whiteout("c")], tmp_path)  # same-layer whiteout ignored
    assert sorted(os.listdir(tmp_path)) == ["a", "b", "c"]
    assert os.listdir(tmp_path / "a") == ["keep"]
    assert os.listdir(tmp_path / "b") == ["new"]


def test_whiteouts_overlay(tmp_path):
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    upper.mkdir()
    lower_tree(lower)
    os.chmod(lower / "a", 0o711)
    apply([im.whiteout("a/gone"), im.opaque("b"), im.file("b/new", "n")], upper,
          overlay=True, parents=[str(lower)])
    st = os.lstat(upper / "a/gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(upper / "b", OVERLAY_OPAQUE_XATTR) == b"y"
    # the parent created for the whiteout copies the lower dir's attributes
    assert stat.S_IMODE(os.lstat(upper / "a").st_mode) == 0o711
    assert not (upper / "a/keep").exists()


def test_hardlink_to_lower_layer_is_copied_up(tmp_path):
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    upper.mkdir()
    lower_tree(lower)
    apply([im.hardlink("a/link", "a/keep")], upper, overlay=True, parents=[str(lower)])
    assert (upper / "a/link").read_text() == "k"
    assert os.lstat(upper / "a/link").st_ino == os.lstat(upper / "a/keep").st_ino


def test_replaces_entries_and_never_writes_through_symlinks(tmp_path):
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    outside.mkdir()
    root.mkdir()
    apply([im.dir("d"), im.symlink("f", "/d"), im.file("x", "file")], root)
    # an entry replacing a symlink replaces it; one replacing a file with a dir, too
    apply([im.file("f", "now a file"), im.dir("x"), im.file("x/y", "y")], root)
    assert (root / "f").read_text() == "now a file" and not os.path.islink(root / "f")
    assert (root / "x/y").read_text() == "y"
    # writing below a symlink to an absolute path stays inside the root
    apply([im.symlink("etc", "/"), im.file("etc/inside", "i"),
           im.symlink("up", "sub/../.."[:0] + "/x/../../.."), im.file("up/deep", "d")], root)
    assert (root / "inside").read_text() == "i"
    assert (root / "deep").read_text() == "d"
    assert os.listdir(outside) == []


@pytest.mark.parametrize("entries,words", [
    ([im.file("../evil", "x")], "'\\.\\.'"),
    ([im.file("a/../../evil", "x")], "'\\.\\.'"),
    ([im.file("/abs", "x")], "absolute"),
    ([im.symlink("esc", "../../..")], "outside the layer root"),
    ([im.dir("a"), im.symlink("a/esc", "../..")], "outside the layer root"),
    ([im.hardlink("hl", "../../etc/passwd")], "'\\.\\.'"),
    ([im.hardlink("hl", "nope")], "not in this layer"),
    ([im.file("x", "x", xattrs={"trusted.overlay.opaque": "y"})], "reserved"),
    ([im.file("f", "x"), im.file("f/under", "y")], "not a directory"),
])
def test_escapes_refused(tmp_path, entries, words):
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(LayerError, match=words) as err:
        apply(entries, root)
    assert "sha256:test" in str(err.value) and "entry" in str(err.value)
    assert not (tmp_path / "evil").exists()


def test_corrupt_streams(tmp_path):
    tar = im.tar_layer([im.file("a", "x" * 10000)])
    gz = im.compress(tar, "gzip")
    with pytest.raises(LayerError, match="sha256:test"):
        apply_layer(io.BytesIO(gz[:len(gz) // 2]), tmp_path, compression="gzip",
                    layer="sha256:test")
    with pytest.raises(LayerError, match="sha256:test"):
        apply_layer(io.BytesIO(b"garbage" * 100), tmp_path, compression="gzip",
                    layer="sha256:test")


def test_empty_root_mode_handles_duplicates_and_replacements(tmp_path):
    tar = im.tar_layer([im.file("a/f", "one"), im.file("a/f", "two"), im.symlink("a/s", "f"),
                        im.file("a/s", "file now"), im.dir("a", mode=0o700)])
    res = apply_layer(io.BytesIO(tar), tmp_path, layer="sha256:test", empty_root=True,
                      overlay=True, standalone=True)
    assert res.implicit_dirs == []  # `a` was listed after all
    assert (tmp_path / "a/f").read_text() == "two"
    assert (tmp_path / "a/s").read_text() == "file now"
    assert stat.S_IMODE(os.lstat(tmp_path / "a").st_mode) == 0o700


def test_owner_and_mode_exact_in_fresh_dirs(tmp_path):
    """Skipped fchown/fchmod must never change the outcome: setgid dirs, odd modes."""
    tar = im.tar_layer([
        im.dir("sg", mode=0o2775, gid=50), im.file("sg/f", "x", mode=0o644),
        im.dir("p"), im.file("p/a", "a", mode=0o644), im.file("p/b", "b", mode=0o664),
        im.file("p/c", "c", mode=0o4755), im.file("p/d", "d", mode=0o600, uid=3, gid=4),
        im.file("top", "t", mode=0o640)])
    apply_layer(io.BytesIO(tar), tmp_path, layer="sha256:test", empty_root=True, overlay=True)
    want = {"sg/f": (0o644, 0, 0), "p/a": (0o644, 0, 0), "p/b": (0o664, 0, 0),
            "p/c": (0o4755, 0, 0), "p/d": (0o600, 3, 4), "top": (0o640, 0, 0)}
    for rel, (mode, uid, gid) in want.items():
        st = os.lstat(tmp_path / rel)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, uid, gid), rel
    st = os.lstat(tmp_path / "sg")
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o2775, 50)
