"""Fixtures for the images tests: registries (helpers.registry) and an in-process
images service over a fresh managerd root (managerd's real stores, no gRPC)."""

from __future__ import annotations

import os

import pytest
from dockyard.managerd.config import Config
from dockyard.managerd.images.service import ImageService
from helpers.registry import registry, registry_basic, registry_token  # noqa: F401

NS = "test"


def make_service(root, snapshotter: str = "overlayfs") -> tuple[object, ImageService]:
    from dockyard.managerd import services
    cfg = Config(root=str(root / "root"), state=str(root / "state"),
                 default_snapshotter=snapshotter)
    ctx = services.build_context(cfg)
    svc = ImageService.from_context(ctx)
    return ctx, svc


@pytest.fixture(params=["overlayfs"])
def svc(request, tmp_path):
    """A fresh ImageService (its ctx at svc.ctx) on tmp_path."""
    ctx, service = make_service(tmp_path, request.param)
    service.ctx = ctx
    yield service
    close(ctx, service)


def close(ctx, service) -> None:
    """Stop the collector before the database closes under it, then everything."""
    service.close()
    ctx.gc.close()
    ctx.close()


@pytest.fixture
def native_svc(tmp_path):
    ctx, service = make_service(tmp_path, "native")
    service.ctx = ctx
    yield service
    close(ctx, service)


def blobs_on_disk(svc) -> list[str]:
    return sorted(os.listdir(svc.content.store.blobs))


@pytest.fixture
def new_service(tmp_path):
    """A factory of more services on fresh roots (closed at teardown)."""
    made = []

    def make(snapshotter: str = "overlayfs") -> ImageService:
        ctx, service = make_service(tmp_path / f"extra{len(made)}", snapshotter)
        service.ctx = ctx
        made.append((ctx, service))
        return service
    yield make
    for ctx, service in made:
        close(ctx, service)
