#!/usr/bin/env python3
"""Write a `docker save`-style archive of a busybox image built from the host's busybox.

    python3 scripts/busybox_image.py OUT.tar [REPO:TAG]      (default busybox:latest)

Used by scripts/setup.sh so a fresh engine can run `busybox` without a
registry: one layer (a static busybox, its applet links, a minimal /etc),
a config with Cmd ["sh"], and manifest.json/repositories as docker writes
them. Stdlib only; the same busybox gives the same digests (fixed mtimes).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile

MTIME = 1_700_000_000
CREATED = "2023-11-14T22:13:20Z"
DIRS = ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "etc",
        "root", "var", "run", "home")
ETC = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
                  "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    "etc/group": "root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n",
}


def find_busybox() -> str:
    for cand in ("/bin/busybox", "/usr/bin/busybox", shutil.which("busybox") or ""):
        if cand and os.path.exists(cand):
            return os.path.realpath(cand)
    sys.exit("busybox_image: no busybox on this host (apt-get install busybox-static)")


def _info(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.size, ti.linkname, ti.mtime = kind, mode, size, link, MTIME
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti


def layer_tar(busybox: str) -> bytes:
    """The root filesystem as an uncompressed tar (the layer; its sha256 is the diff_id)."""
    applets = subprocess.run([busybox, "--list-full"], check=True, capture_output=True,
                             text=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in DIRS:
            tar.addfile(_info(d, tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755))
        with open(busybox, "rb") as f:
            data = f.read()
        tar.addfile(_info("bin/busybox", tarfile.REGTYPE, 0o755, len(data)), io.BytesIO(data))
        for rel in sorted(set(applets)):
            if rel == "bin/busybox" or rel.count("/") == 0:
                continue
            depth = rel.count("/")
            target = "busybox" if depth == 1 and rel.startswith("bin/") else \
                "../" * depth + "bin/busybox"
            if depth == 1 and not rel.startswith("bin/"):
                target = "../bin/busybox"
            tar.addfile(_info(rel, tarfile.SYMTYPE, 0o777, link=target))
        for name, text in ETC.items():
            raw = text.encode()
            tar.addfile(_info(name, tarfile.REGTYPE, 0o644, len(raw)), io.BytesIO(raw))
    return buf.getvalue()


def archive(busybox: str, ref: str) -> bytes:
    layer = layer_tar(busybox)
    diff_id = hashlib.sha256(layer).hexdigest()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(platform.machine(),
                                                                         platform.machine())
    config = {
        "architecture": arch, "os": "linux", "created": CREATED,
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [{"created": CREATED,
                     "created_by": f"dockyard setup: the host's {busybox}"}],
    }
    config_raw = json.dumps(config, separators=(",", ":"), sort_keys=True).encode()
    config_id = hashlib.sha256(config_raw).hexdigest()
    repo, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
    manifest = [{"Config": f"{config_id}.json", "RepoTags": [f"{repo}:{tag}"],
                 "Layers": [f"{diff_id}/layer.tar"]}]
    files = {
        f"{diff_id}/VERSION": b"1.0",
        f"{diff_id}/json": json.dumps({"id": diff_id, "created": CREATED,
                                       "os": "linux"}).encode(),
        f"{diff_id}/layer.tar": layer,
        f"{config_id}.json": config_raw,
        "manifest.json": json.dumps(manifest).encode(),
        "repositories": json.dumps({repo: {tag: diff_id}}).encode(),
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(_info(diff_id, tarfile.DIRTYPE, 0o755))
        for name, data in files.items():
            tar.addfile(_info(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    return buf.getvalue()


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        sys.exit(__doc__)
    data = archive(find_busybox(), argv[1] if len(argv) == 2 else "busybox:latest")
    with open(argv[0], "wb") as f:
        f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
