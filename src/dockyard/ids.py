"""Identifiers: container ids, the validity rule shared by every layer."""

from __future__ import annotations

import os
import re

from dockyard.errdefs import InvalidArgument

__all__ = ["new_id", "validate_id"]

# runc's rule: no path separators, no "." or "..", printable, bounded length
_VALID_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,1023}$")


def new_id() -> str:
    """A new 64-hex-digit id, as Docker makes them."""
    return os.urandom(32).hex()


def validate_id(container_id: str) -> str:
    """Return the id if it is safe as a single path component, else raise InvalidArgument."""
    if not _VALID_ID.match(container_id) or container_id in (".", ".."):
        raise InvalidArgument(f"invalid container id {container_id!r}: "
                              "use letters, digits, '_', '.', '+', '-', not a path")
    return container_id
