"""Progress reports of pulls and pushes: one small record per layer event.

apid turns these into Docker's JSON progress stream ("Pulling fs layer",
"Downloading" with progressDetail, "Pull complete", "Already exists",
"Pushed", ...); the CLI draws bars from `current`/`total`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Progress", "ProgressFn", "short_id", "discard",
           "RESOLVING", "RESOLVED", "WAITING", "DOWNLOADING", "VERIFYING", "DOWNLOADED",
           "EXTRACTING", "DONE", "EXISTS", "PREPARING", "PUSHING", "MOUNTED",
           "LAYER_EXISTS", "PUSHED", "LOADING", "LOADED"]

# pull, per layer (id = short digest) unless noted
RESOLVING = "resolving"  # id = the reference
RESOLVED = "resolved"  # id = the reference; detail = manifest digest
WAITING = "waiting"
DOWNLOADING = "downloading"  # current/total bytes
VERIFYING = "verifying"
DOWNLOADED = "download complete"
EXTRACTING = "extracting"  # current/total bytes of the compressed blob read so far
DONE = "pull complete"
EXISTS = "already exists"
# push, per layer
PREPARING = "preparing"
PUSHING = "pushing"  # current/total bytes
MOUNTED = "mounted"  # detail = the repository it was mounted from
LAYER_EXISTS = "layer already exists"
PUSHED = "pushed"
# load
LOADING = "loading"  # current/total bytes of a layer
LOADED = "loaded"  # id = image name or ID


@dataclass(frozen=True)
class Progress:
    """One event. `id` is the layer's short digest (12 hex), or a reference for
    whole-image events; `current`/`total` are bytes (0 = not applicable)."""

    id: str
    status: str
    current: int = 0
    total: int = 0
    detail: str = ""


ProgressFn = Callable[[Progress], None]


def discard(_: Progress) -> None:
    """A ProgressFn that ignores everything."""


def short_id(digest: str) -> str:
    """`sha256:0123456789abcdef…` -> `0123456789ab`, as Docker shows layer ids."""
    return digest.split(":", 1)[-1][:12]
