"""Writing tar streams piece by piece (save, export, commit), without tarfile's
whole-member buffering: headers come from TarInfo.tobuf(), data is streamed
and padded to 512-byte blocks here, so a 1 GB layer never sits in memory."""

from __future__ import annotations

import tarfile
import time
from collections.abc import Iterable, Iterator

__all__ = ["header", "padding", "regular", "END", "BLOCK"]

BLOCK = 512
END = b"\0" * (2 * BLOCK)  # two zero blocks close an archive


def header(ti: tarfile.TarInfo) -> bytes:
    """The PAX header blocks of one entry (long names, big sizes and xattrs included)."""
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def regular(name: str, size: int, chunks: Iterable[bytes], mode: int = 0o644,
            mtime: float | None = None) -> Iterator[bytes]:
    """A regular file entry: header, data (must total `size` bytes), padding."""
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode = size, mode
    ti.mtime = int(time.time() if mtime is None else mtime)
    yield header(ti)
    sent = 0
    for chunk in chunks:
        sent += len(chunk)
        yield chunk
    if sent != size:
        raise OSError(f"tar entry {name}: wrote {sent} bytes, header says {size}")
    yield padding(size)
