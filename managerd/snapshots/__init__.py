"""Snapshots: layered filesystems on overlayfs (or copied directories), their
namespaced metadata, and mount helpers for callers."""
