"""Field-mask helpers shared by the metadata stores (labels.<key> style paths)."""

from __future__ import annotations

from collections.abc import Sequence

from dockyard.errdefs import InvalidArgument

MAX_LABEL = 4096


def validate_labels(labels: dict[str, str], what: str) -> dict[str, str]:
    for key, value in labels.items():
        if not key:
            raise InvalidArgument(f"{what}: label key must not be empty")
        if len(key) + len(value) > MAX_LABEL:
            raise InvalidArgument(f"{what}: label {key!r} is longer than {MAX_LABEL} bytes")
    return dict(labels)


def apply_map(current: dict, new: dict, fieldpaths: Sequence[str], name: str) -> tuple[dict, bool]:
    """Apply the `name` / `name.<key>` paths of a field mask to a map.

    Returns:
        (the resulting map, whether any path touched it). `name` replaces the
        whole map; `name.<key>` sets that key from `new`, or removes it when
        `new` lacks it.
    """
    out, touched = dict(current), False
    for path in fieldpaths:
        if path == name:
            out, touched = dict(new), True
        elif path.startswith(name + "."):
            key = path[len(name) + 1:]
            if key in new:
                out[key] = new[key]
            else:
                out.pop(key, None)
            touched = True
    return out, touched
