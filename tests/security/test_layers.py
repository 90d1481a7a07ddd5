"""Hostile image layers: no tar entry may be written outside its layer.

First `apply_layer` directly on a tmp dir (each escape refused with an error
naming the entry, or, where Docker accepts the entry, written inside the root
only), then real pulls from a registry on loopback: a refused layer leaves no
image, blob or snapshot behind.
"""

from __future__ import annotations

import io
import os
import tarfile
import uuid

import pytest
from dockyard.managerd.images import pull as pullmod
from dockyard.managerd.images.apply import LayerError, apply_layer
from helpers import images as im

from dockyard.errdefs import InvalidArgument

pytestmark = pytest.mark.timeout(120)
LAYER = "sha256:" + "5" * 64
NS = "sec"


def apply(entries_or_tar, root, **kw):
    tar = entries_or_tar if isinstance(entries_or_tar, bytes) else im.tar_layer(entries_or_tar)
    return apply_layer(io.BytesIO(tar), root, layer=LAYER, **kw)


def huge_claim(name: str) -> bytes:
    """A tar whose regular-file header claims 1 TiB and whose data stops at once."""
    ti = tarfile.TarInfo(name)
    ti.size = 1 << 40
    return ti.tobuf(format=tarfile.PAX_FORMAT) + b"\0" * 1024


def escapes(marker: str) -> list:
    """(id, entries or tar bytes, the refused entry's name, why) for one host target."""
    return [
        ("dotdot", [im.file("../x", "x")], "../x", "'..'"),
        ("dotdot-deep", [im.dir("a"), im.file("a/../../x", "x")], "a/../../x", "'..'"),
        ("absolute", [im.file("/etc/dy-x", "x")], "/etc/dy-x", "absolute"),
        ("absolute-marker", [im.file(marker + "/x", "x")], marker + "/x", "absolute"),
        ("symlink-up", [im.symlink("up", "../../.."), im.file("up/x", "x")], "up",
         "outside the layer root"),
        ("symlink-up-nested", [im.dir("d"), im.symlink("d/up", "../../" + marker),
                               im.file("d/up/x", "x")], "d/up", "outside the layer root"),
        ("hardlink-shadow", [im.hardlink("shadow", "/etc/shadow")], "shadow",
         "not in this layer"),
        ("hardlink-marker", [im.hardlink("s", marker + "/sentinel")], "s", "not in this layer"),
        # (names the link target, not the entry x: reported to images)
        ("hardlink-dotdot", [im.hardlink("x", "../../x")], "../../x", "'..'"),
        ("whiteout-dotdot", [im.file(".wh...", "")], ".wh...", "invalid whiteout"),
        ("whiteout-dot", [im.dir("d"), im.file("d/.wh..", "")], "d/.wh..", "invalid whiteout"),
        ("huge-size", huge_claim("big"), "big", "ends inside"),
    ]


CASES = [c[0] for c in escapes("/m")]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("overlay", [False, True])
def test_escaping_entry_refused_and_named(tmp_path, host_marker, case, overlay):
    _, entries, name, why = next(c for c in escapes(str(host_marker)) if c[0] == case)
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(LayerError) as err:
        apply(entries, root, overlay=overlay)
    msg = str(err.value)
    assert f"layer {LAYER}: entry {name!r}" in msg and why in msg, msg
    host_marker.assert_untouched()
    assert sorted(os.listdir(tmp_path)) == sorted(["root", host_marker.name])


def test_absolute_symlink_then_file_lands_inside(tmp_path, host_marker):
    """`a -> /` then `a/<host dir>/x`: Docker accepts it; the file goes in the layer."""
    root = tmp_path / "root"
    root.mkdir()
    apply([im.symlink("a", "/"), im.file("a" + str(host_marker) + "/x", "in"),
           im.symlink("b", str(host_marker)), im.file("b/y", "in"),
           im.hardlink("b/z", "a" + str(host_marker) + "/x")], root)
    inside = root / str(host_marker).lstrip("/")
    assert (inside / "x").read_text() == "in" and (inside / "y").read_text() == "in"
    with open("/etc/passwd", "rb") as f:
        host_passwd = f.read()
    apply([im.symlink("c", "/"), im.file("c/etc/passwd", "pwned\n")], root)
    assert (root / "etc/passwd").read_text() == "pwned\n"
    with open("/etc/passwd", "rb") as f:
        assert f.read() == host_passwd
    assert os.stat(inside / "z").st_ino == os.stat(inside / "x").st_ino
    host_marker.assert_untouched()


def test_replaced_dir_does_not_leave_a_cached_way_out(tmp_path, host_marker):
    """A dir reached through a symlink (`x -> a`, `x/y/...`) and then replaced by a
    symlink to a host dir (`a -> <host>`): later `x/y/...` entries and the deferred
    directory mtimes must not follow it out of the root."""
    (host_marker / "y").mkdir()
    os.utime(host_marker / "y", ns=(10**18, 10**18))
    os.utime(host_marker, ns=(host_marker.mtime, host_marker.mtime))
    root = tmp_path / "root"
    root.mkdir()
    apply([im.dir("a"), im.dir("a/y"), im.symlink("x", "a"), im.file("x/y/f1", "1"),
           im.symlink("a", str(host_marker)), im.file("x/y/pwned", "p"),
           im.hardlink("x/y/hl", "x/y/pwned")], root)
    assert sorted(os.listdir(host_marker / "y")) == []
    assert os.stat(host_marker / "y").st_mtime_ns == 10**18
    (host_marker / "y").rmdir()
    os.utime(host_marker, ns=(host_marker.mtime, host_marker.mtime))
    host_marker.assert_untouched()
    # chroot semantics: x -> a -> <host path> resolves inside the root
    assert (root / str(host_marker).lstrip("/") / "y/pwned").read_text() == "p"


def test_whiteouts_through_symlinks_stay_inside(tmp_path, host_marker):
    root = tmp_path / "root"
    root.mkdir()
    for overlay in (False, True):
        apply([im.symlink("a", str(host_marker)), im.whiteout("a/sentinel"),
               im.symlink("b", "/"), im.opaque("b" + str(host_marker))], root, overlay=overlay)
    host_marker.assert_untouched()


def test_hardlink_through_a_lower_layers_symlink_is_refused(tmp_path, host_marker):
    """Copy-up of a lower layer's file must not follow the lower's symlinks out."""
    lower = tmp_path / "lower"
    lower.mkdir()
    os.symlink(str(host_marker), lower / "etc")
    upper = tmp_path / "upper"
    upper.mkdir()
    with pytest.raises(LayerError, match="entry 'h'"):
        apply([im.hardlink("h", "etc/sentinel")], upper, overlay=True, parents=[str(lower)])
    assert os.listdir(upper) == []
    host_marker.assert_untouched()


def test_device_entries_are_created_inside_only(tmp_path, host_marker):
    """Docker and containerd unpack device nodes (the device cgroup keeps them
    unusable: test_shim_breakout); they must stay in the layer like any entry."""
    root = tmp_path / "root"
    root.mkdir()
    apply([im.symlink("d", str(host_marker)), im.device("d/mem", major=1, minor=1),
           im.device("disk", kind="block", major=7, minor=0)], root)
    inside = root / str(host_marker).lstrip("/")
    assert os.major(os.stat(inside / "mem").st_rdev) == 1
    host_marker.assert_untouched()


# --- through a real pull ------------------------------------------------------------------------

@pytest.fixture
def svc(tmp_path):
    from dockyard.managerd import services
    from dockyard.managerd.config import Config
    from dockyard.managerd.images.service import ImageService
    ctx = services.build_context(Config(root=str(tmp_path / "mroot"),
                                        state=str(tmp_path / "mstate")))
    service = ImageService.from_context(ctx)
    yield service
    service.close()
    ctx.gc.close()
    ctx.close()


@pytest.mark.parametrize("case", ["dotdot", "hardlink-shadow", "huge-size"])
def test_pull_of_an_escaping_layer_leaves_nothing(svc, registry, host_marker, case):
    _, entries, name, why = next(c for c in escapes(str(host_marker)) if c[0] == case)
    tar = entries if isinstance(entries, bytes) else im.tar_layer(entries)
    good = im.tar_layer([im.file("ok", "fine")])
    img = im.make_image([good, tar])
    repo = f"sec{uuid.uuid4().hex[:10]}"
    im.push(registry, repo, "latest", img)
    with pytest.raises(InvalidArgument) as err:
        pullmod.pull(svc, NS, f"{registry.host}/{repo}")
    assert f"layer {img.layers[1].digest}: entry {name!r}" in str(err.value), str(err.value)
    assert why in str(err.value)
    assert svc.images.list(NS) == []
    assert os.listdir(svc.content.store.blobs) == []
    assert svc.snapshots.list(NS, svc.snapshotter) == []
    host_marker.assert_untouched()


def test_pull_of_a_cached_way_out_stays_inside(svc, registry, host_marker):
    (host_marker / "y").mkdir()
    layer = im.tar_layer([im.dir("a"), im.dir("a/y"), im.symlink("x", "a"),
                          im.file("x/y/f1", "1"), im.symlink("a", str(host_marker)),
                          im.file("x/y/pwned", "p")])
    img = im.make_image([layer])
    repo = f"sec{uuid.uuid4().hex[:10]}"
    im.push(registry, repo, "latest", img)
    res = pullmod.pull(svc, NS, f"{registry.host}/{repo}")
    assert os.listdir(host_marker / "y") == []
    top = svc.snapshots.path(NS, svc.snapshotter, res.layers[-1])
    assert os.path.isfile(os.path.join(top, str(host_marker).lstrip("/"), "y/pwned"))


def test_pull_parent_dir_attrs_never_reach_the_host(svc, registry, host_marker):
    """Implicit parent dirs take a lower layer's owner/mode (containerd); when such
    a dir is replaced by a symlink to a host dir, the host dir must keep its own."""
    target = host_marker / "y"
    target.mkdir(mode=0o755)
    os.chmod(target, 0o755)
    lower = im.tar_layer([im.dir("a", mode=0o777, uid=4321), im.dir("a/y", mode=0o777, uid=4321)])
    upper = im.tar_layer([im.file("a/y/f", "x"), im.symlink("a", str(host_marker))])
    img = im.make_image([lower, upper])
    repo = f"sec{uuid.uuid4().hex[:10]}"
    im.push(registry, repo, "latest", img)
    pullmod.pull(svc, NS, f"{registry.host}/{repo}")
    st = os.stat(target)
    assert (oct(st.st_mode & 0o7777), st.st_uid) == (oct(0o755), 0), "host dir's attributes changed"
    assert os.listdir(target) == []


def test_commit_never_reads_a_host_file_through_a_swapped_symlink(tmp_path, host_marker):
    """`docker commit` of a running container: a file swapped for a symlink to a host
    file between the walk's lstat and the read must not put the host file in the layer."""
    from dockyard.managerd.images import commit
    f = tmp_path / "upper-file"
    f.write_text("ctr!")  # same size as the sentinel: a naive read would fill the entry
    st = os.lstat(f)
    f.unlink()
    os.symlink(host_marker / "sentinel", f)
    with pytest.raises(OSError):
        b"".join(commit._entry(str(f), "file", st, {}))
