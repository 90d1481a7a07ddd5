"""Two writers of one ref (two pulls of the same image write its manifest under the
same ref): the second waits for the first instead of failing with 'ref is locked'."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
from dockyard.managerd import services
from dockyard.managerd.config import Config

NS = "test"


@pytest.fixture
def content(tmp_path):
    ctx = services.build_context(Config(root=str(tmp_path / "root"),
                                        state=str(tmp_path / "state")))
    yield ctx.content
    ctx.close()


def test_write_blob_waits_for_the_writer_holding_its_ref(content):
    data = b'{"schemaVersion": 2}'
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    first = content.writer(NS, "manifest-x", digest, len(data))
    result = {}
    second = threading.Thread(
        target=lambda: result.setdefault("info", content.write_blob(NS, "manifest-x", data,
                                                                    digest)))
    second.start()
    time.sleep(0.2)
    assert second.is_alive(), "the second writer should wait, not fail"
    with first:
        first.write(data)
        first.commit(len(data), digest)
    second.join(timeout=10)
    assert result["info"].digest == digest and result["info"].size == len(data)
