"""Transfer progress -> Docker's JSON progress lines (pull, push, load). Pure.

Owns the wording and shape of docker-api-flow.md §7: `Pulling from <repo>`,
per-layer `Pulling fs layer` / `Waiting` / `Downloading` (with progressDetail
and a 50-column bar) / `Verifying Checksum` / `Download complete` /
`Extracting` / `Pull complete` / `Already exists`, then `Digest:` and
`Status: Downloaded newer image for <ref>` or `Image is up to date`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PullRenderer", "PushRenderer", "bar", "human_size"]

_PULL_WORDS = {
    "waiting": "Waiting", "downloading": "Downloading", "verifying": "Verifying Checksum",
    "download complete": "Download complete", "extracting": "Extracting",
    "pull complete": "Pull complete", "already exists": "Already exists",
}
_PUSH_WORDS = {
    "preparing": "Preparing", "waiting": "Waiting", "pushing": "Pushing",
    "layer already exists": "Layer already exists", "pushed": "Pushed",
}


def human_size(n: float) -> str:
    """go-units HumanSize (decimal units, 4 significant digits): 3.147MB, 36.45kB."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000.0
        i += 1
    return f"{n:.4g}{units[i]}"


def bar(current: int, total: int) -> str:
    """Docker's progress string: `[=====>      ]  36.45kB/3.147MB`."""
    if total <= 0:
        return f"{human_size(current)}"
    width = 50
    done = min(width, int(width * current / total))
    arrow = ("=" * (done - 1) + ">" if done else ">") if done < width else "=" * width
    return f"[{arrow.ljust(width)}] {human_size(current).rjust(8)}/{human_size(total)}"


class PullRenderer:
    """Feed Transfer.Pull progress messages; get Docker's JSON objects."""

    def __init__(self, reference: str) -> None:
        self.reference = reference
        self.started = False
        self.layers: set[str] = set()

    def _repo_tag(self) -> tuple[str, str]:
        ref = self.reference
        if "@" in ref:
            repo, digest = ref.split("@", 1)
            return repo, digest
        last = ref.rsplit("/", 1)[-1]
        if ":" in last:
            repo, tag = ref.rsplit(":", 1)
            return repo, tag
        return ref, "latest"

    def render(self, p: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        repo, tag = self._repo_tag()
        if not self.started:
            self.started = True
            out.append({"status": f"Pulling from {_path(repo)}", "id": tag})
        status = (p.status or "").lower()
        pulled = p.pulled if p.HasField("pulled") else None
        if pulled is not None:
            out.append({"status": f"Digest: {pulled.digest}"})
            ref = self.reference if ("@" in self.reference or ":" in self.reference.rsplit(
                "/", 1)[-1]) else f"{self.reference}:latest"
            word = "Image is up to date for" if pulled.up_to_date else \
                "Downloaded newer image for"
            out.append({"status": f"Status: {word} {ref}"})
            return out
        if status in ("resolving", "resolved", ""):
            return out
        layer = p.id
        if layer and layer not in self.layers and status not in ("already exists",):
            self.layers.add(layer)
            out.append({"status": "Pulling fs layer", "progressDetail": {}, "id": layer})
        word = _PULL_WORDS.get(status, p.status)
        msg: dict[str, Any] = {"status": word, "progressDetail": {}, "id": layer}
        if status in ("downloading", "extracting") and p.total:
            msg["progressDetail"] = {"current": int(p.current), "total": int(p.total)}
            msg["progress"] = bar(int(p.current), int(p.total))
        out.append(msg)
        return out


class PushRenderer:
    """Feed Transfer.Push progress; get Docker's push JSON objects."""

    def __init__(self, reference: str) -> None:
        self.reference = reference
        self.started = False

    def render(self, p: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if not self.started:
            self.started = True
            repo = self.reference.rsplit(":", 1)[0] if ":" in self.reference.rsplit(
                "/", 1)[-1] else self.reference
            out.append({"status": f"The push refers to repository [{repo}]"})
        if p.HasField("pushed"):
            r = p.pushed
            # the CLI prints `status` lines and hands `aux` ones to a callback: two messages
            out.append({"status": f"{r.tag}: digest: {r.digest} size: {r.size}"})
            out.append({"progressDetail": {}, "aux": {"Tag": r.tag, "Digest": r.digest,
                                                      "Size": r.size}})
            return out
        status = (p.status or "").lower()
        if not p.id:
            return out
        word = _PUSH_WORDS.get(status, p.status)
        if status == "mounted":
            word = f"Mounted from {p.detail}"
        msg: dict[str, Any] = {"status": word, "progressDetail": {}, "id": p.id}
        if status == "pushing" and p.total:
            msg["progressDetail"] = {"current": int(p.current), "total": int(p.total)}
            msg["progress"] = bar(int(p.current), int(p.total))
        out.append(msg)
        return out


def _path(repo: str) -> str:
    """`docker.io/library/busybox` -> `library/busybox`; `host:5000/a/b` -> `a/b`."""
    first, _, rest = repo.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return rest
    return repo if "/" in repo else f"library/{repo}"
