"""apid's gRPC manager without managerd: the transfer streams behind pull and push."""

from __future__ import annotations

import asyncio

import pytest
from dockyard.apid.grpc_manager import GrpcManager


class _Call:
    """A server stream that never ends on its own; records cancel()."""

    def __init__(self) -> None:
        self.cancelled = False

    async def read(self):
        await asyncio.sleep(0)
        return object()


class _Renderer:
    def render(self, _msg):
        return [{"status": "x"}]


@pytest.mark.parametrize("verb", ["pull", "push"])
def test_a_stream_left_early_cancels_the_transfer(verb, monkeypatch):
    """The HTTP client went away after one progress object: managerd's pull or push is
    cancelled, not finished for nobody."""
    from dockyard.apid import progress

    async def main() -> None:
        m = GrpcManager("unix:///nonexistent/dy-test.sock")
        call = _Call()
        call.cancel = lambda: setattr(call, "cancelled", True)
        monkeypatch.setattr(m.transfer, "Pull", lambda *a, **k: call)
        monkeypatch.setattr(m.transfer, "Push", lambda *a, **k: call)
        monkeypatch.setattr(progress, "PullRenderer", lambda *_: _Renderer())
        monkeypatch.setattr(progress, "PushRenderer", lambda *_: _Renderer())
        stream = m.pull("busybox", {}) if verb == "pull" else m.push("busybox", "", {})
        assert await stream.__anext__() == {"status": "x"}
        await stream.aclose()
        assert call.cancelled
        await m.channel.close()

    asyncio.run(asyncio.wait_for(main(), 10))
