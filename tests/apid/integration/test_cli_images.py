"""Image commands of the docker CLI against apid (over managerd's Transfer service)."""

from __future__ import annotations

import json
import tarfile

import pytest
from helpers.registry import PASSWORD, USERNAME, registry_basic  # noqa: F401 - fixture

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(180)]


def test_pull_images_tag_push_rmi(stack, pulled, name):
    r = stack.docker("pull", stack.image)
    assert r.returncode == 0 and b"Image is up to date" in r.stdout, r.stdout
    listed = stack.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.decode()
    assert stack.image in listed
    host = stack.image.split("/")[0]
    pushed = f"{host}/dy-pushed/{name}:v1"
    assert stack.docker("tag", stack.image, pushed).returncode == 0
    r = stack.docker("push", pushed)
    assert r.returncode == 0, r.stderr
    assert b"v1: digest: sha256:" in r.stdout
    assert stack.docker("rmi", pushed).returncode == 0
    r = stack.docker("pull", pushed)
    assert r.returncode == 0 and b"Digest: sha256:" in r.stdout, r.stderr
    hist = stack.docker("history", "--format", "{{.ID}}", pushed).stdout.decode().split()
    assert hist and hist[0] != "<missing>"
    r = stack.docker("rmi", pushed)
    assert r.returncode == 0 and b"Untagged:" in r.stdout
    r = stack.docker("rmi", "dockyard.test/never:1")
    assert r.returncode == 1 and b"No such image" in r.stderr


def test_save_load_commit_export(stack, pulled, name, tmp_path):
    archive = tmp_path / "img.tar"
    assert stack.docker("save", "-o", str(archive), stack.image).returncode == 0
    with tarfile.open(archive) as tar:
        assert "manifest.json" in tar.getnames()
    r = stack.docker("load", "-i", str(archive))
    assert r.returncode == 0 and b"Loaded image" in r.stdout, r.stderr
    assert stack.docker("run", "--name", name, stack.image, "sh", "-c",
                        "echo committed > /marker").returncode == 0
    r = stack.docker("commit", "-c", "CMD [\"cat\", \"/marker\"]", name, f"dy-commit/{name}:v1")
    assert r.returncode == 0, r.stderr
    out = stack.docker("run", "--rm", f"dy-commit/{name}:v1")
    assert out.stdout == b"committed\n", out.stderr
    exported = tmp_path / "fs.tar"
    assert stack.docker("export", "-o", str(exported), name).returncode == 0
    with tarfile.open(exported) as tar:
        names = set(tar.getnames())
    assert "marker" in names or "./marker" in names
    stack.docker("rm", name)
    stack.docker("rmi", f"dy-commit/{name}:v1")
    inspect = json.loads(stack.docker("image", "inspect", stack.image).stdout)[0]
    assert inspect["Id"].startswith("sha256:") and inspect["Os"] == "linux"


def test_login_checks_credentials(stack, registry_basic):  # noqa: F811
    r = stack.docker("login", "-u", USERNAME, "--password-stdin", registry_basic.host,
                     input=PASSWORD.encode())
    assert r.returncode == 0 and b"Login Succeeded" in r.stdout, r.stderr
    r = stack.docker("login", "-u", USERNAME, "--password-stdin", registry_basic.host,
                     input=b"wrong")
    assert r.returncode != 0 and b"401" in r.stderr


def test_ps_filters_df_prune(stack, busybox, name):
    assert stack.docker("run", "-d", "--name", name, "--label", "dy.f=1", busybox,
                        "sleep", "60").returncode == 0
    assert stack.docker("run", "--name", name + "-x", busybox, "sh", "-c",
                        "exit 4").returncode == 4

    def ps(*flt: str) -> list[str]:
        args = ["ps", "-a", "--format", "{{.Names}}"]
        for f in flt:
            args += ["--filter", f]
        return stack.docker(*args).stdout.decode().split()

    assert ps("label=dy.f=1") == [name]
    assert ps(f"name={name}", "status=exited") == [name + "-x"]
    assert ps(f"name={name}", "exited=4") == [name + "-x"]
    assert name in ps("status=running")
    df = stack.docker("system", "df", "--format", "{{.Type}} {{.TotalCount}}")
    assert df.returncode == 0 and b"Containers" in df.stdout, df.stderr
    r = stack.docker("container", "prune", "-f", "--filter", "label!=dy.keep")
    assert r.returncode == 0 and stack.docker("inspect", name + "-x").returncode != 0
    assert stack.docker("inspect", name).returncode == 0  # running ones stay
    stack.docker("rm", "-f", name)


def test_import_rootfs_tar(stack, name, tmp_path):
    import io

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        payload = b"imported\n"
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    path = tmp_path / "rootfs.tar"
    path.write_bytes(data.getvalue())
    r = stack.docker("import", str(path), f"dy-import/{name}:v1")
    assert r.returncode == 0 and r.stdout.startswith(b"sha256:"), r.stderr
    listed = stack.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.decode()
    assert f"dy-import/{name}:v1" in listed
    stack.docker("rmi", f"dy-import/{name}:v1")


def test_image_prune_dangling(stack, busybox, name):
    assert stack.docker("run", "--name", name, busybox, "true").returncode == 0
    r = stack.docker("commit", name)  # no name: a dangling image
    assert r.returncode == 0, r.stderr
    image_id = r.stdout.decode().strip()
    stack.docker("rm", name)
    dangling = stack.docker("images", "-q", "--no-trunc", "--filter", "dangling=true")
    assert image_id in dangling.stdout.decode()
    r = stack.docker("image", "prune", "-f")
    assert r.returncode == 0 and image_id in r.stdout.decode(), r.stdout
