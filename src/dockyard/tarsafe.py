"""Extracting tar members the same way on every Python 3.11.

tarfile's extraction filters arrived in 3.11.4; Debian bookworm ships 3.11.2.
`extract` uses the real filter where it exists and an equivalent check where
it does not, so a caller never silently loses the protection it asked for.
"""

from __future__ import annotations

import copy
import os
import stat
import tarfile

__all__ = ["HAS_FILTERS", "extract"]

HAS_FILTERS = hasattr(tarfile, "data_filter")


def _inside(dest: str, path: str) -> bool:
    return os.path.commonpath([dest, path]) == dest


def _tar_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """What tarfile's "tar" filter does, plus hard-link targets kept inside dest.

    A symlink may point anywhere (it is content, as in docker cp); what matters is
    that no later entry is written through it, which the realpath check ensures.
    """
    dest = os.path.realpath(dest)
    name = member.name.lstrip("/" + os.sep)
    if os.path.isabs(name):
        raise tarfile.ExtractError(f"tar entry {member.name!r} has an absolute path")
    target = os.path.realpath(os.path.join(dest, name))
    if not _inside(dest, target):
        raise tarfile.ExtractError(f"tar entry {member.name!r} would be extracted outside "
                                   f"{dest}")
    if member.islnk() and not _inside(
            dest, os.path.realpath(os.path.join(dest, member.linkname.lstrip("/")))):
        raise tarfile.ExtractError(f"tar entry {member.name!r} hard-links outside {dest}: "
                                   f"{member.linkname!r}")
    member = copy.copy(member)
    member.name = name
    if member.mode is not None:
        member.mode &= ~(stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | stat.S_IWGRP | stat.S_IWOTH)
    return member


def extract(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: str, *, trusted: bool,
            numeric_owner: bool = False, set_attrs: bool = True) -> None:
    """Extract one member into dest.

    Args:
        trusted: the caller has already resolved the member safely inside dest
            ("fully_trusted"); otherwise the "tar" filter's checks apply and an
            entry that would leave dest raises tarfile.ExtractError (or a
            tarfile.FilterError subclass of it on newer Pythons).
    """
    if HAS_FILTERS:
        tar.extract(member, dest, set_attrs=set_attrs, numeric_owner=numeric_owner,
                    filter="fully_trusted" if trusted else "tar")
        return
    if not trusted:
        member = _tar_filter(member, dest)
    tar.extract(member, dest, set_attrs=set_attrs, numeric_owner=numeric_owner)
