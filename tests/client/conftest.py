"""Fixtures of the CLI's tests: `engine`, a real apid + managerd per test module."""

from __future__ import annotations

import pytest

from .engine import Engine, EngineUnavailable, cleanup


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    base = tmp_path_factory.mktemp("dy-engine")
    eng = Engine(base)
    try:
        eng.start()
        eng.ensure_busybox(base / "busybox.tar")
    except EngineUnavailable as e:
        eng.stop()
        cleanup(base)
        pytest.skip(f"no working engine: {e}")
    yield eng
    eng.stop()
    cleanup(base)
