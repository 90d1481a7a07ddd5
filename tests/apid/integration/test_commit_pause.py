"""POST /commit pauses a running container for the diff (dockerd's `pause`, default true).

A container with a big file makes the commit slow enough to watch: while it runs,
inspect says Paused and the freezer holds the container's processes; afterwards
the container runs again — also when the commit fails. `pause=false` never
pauses, and a container the user paused stays paused.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

pytestmark = [pytest.mark.privileged, pytest.mark.timeout(180)]


@pytest.fixture
def big(stack, busybox, name):
    """A running container whose upper dir holds 120 MB of random data."""
    r = stack.docker("run", "-d", "--name", name, busybox, "sh", "-c",
                     "dd if=/dev/urandom of=/big bs=1M count=120 2>/dev/null && touch /done;"
                     " exec sleep 300")
    assert r.returncode == 0, r.stderr.decode() + stack.apid.log()
    deadline = time.monotonic() + 60
    while stack.docker("exec", name, "test", "-f", "/done").returncode != 0:
        assert time.monotonic() < deadline, "dd did not finish"
        time.sleep(0.2)
    yield name
    stack.docker("rm", "-f", name)


def freezer_state(pid: int) -> str:
    """FROZEN/THAWED of the container's freezer cgroup (v1), or v2's cgroup.freeze."""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = [ln.rstrip("\n").split(":", 2) for ln in f]
    for _, ctrl, path in lines:
        if "freezer" in ctrl.split(","):
            with open(f"/sys/fs/cgroup/freezer{path}/freezer.state") as f:
                return f.read().strip()
    path = next(p for _, ctrl, p in lines if ctrl == "")
    with open(f"/sys/fs/cgroup/unified{path}/cgroup.freeze") as f:
        return "FROZEN" if f.read().strip() == "1" else "THAWED"


def commit_watching(stack, name: str, **params) -> tuple[object, set, set]:
    """Commit in a thread; meanwhile collect inspect's State.Paused and the freezer state."""
    with stack.http() as c:
        pid = c.get(f"/containers/{name}/json").json()["State"]["Pid"]
    result: dict = {}

    def run():
        with stack.http() as c:
            result["r"] = c.post("/commit", params={"container": name, **params}, timeout=120)

    t = threading.Thread(target=run)
    t.start()
    paused, frozen = set(), set()
    with stack.http() as c:
        while t.is_alive():
            paused.add(c.get(f"/containers/{name}/json").json()["State"]["Paused"])
            try:
                frozen.add(freezer_state(pid))
            except (OSError, StopIteration):
                pass
            time.sleep(0.02)
    t.join()
    return result["r"], paused, frozen


def events_of(stack, name: str, since: float) -> list[str]:
    with stack.http() as c:
        r = c.get("/events", params={"since": f"{since:.3f}", "until": f"{time.time():.3f}",
                                     "filters": json.dumps({"container": [name]})})
    return [json.loads(ln)["Action"] for ln in r.text.splitlines() if ln.strip()]


def state(stack, name: str) -> dict:
    with stack.http() as c:
        return c.get(f"/containers/{name}/json").json()["State"]


def test_commit_pauses_a_running_container_and_resumes_it(stack, big):
    since = time.time() - 1
    r, paused, frozen = commit_watching(stack, big, repo="dy-commit-paused")
    assert r.status_code == 201, r.text
    assert True in paused and "FROZEN" in frozen, (paused, frozen)
    st = state(stack, big)
    assert st["Running"] and not st["Paused"] and st["Status"] == "running"
    with stack.http() as c:
        pid = c.get(f"/containers/{big}/json").json()["State"]["Pid"]
    assert freezer_state(pid) == "THAWED"
    assert stack.docker("exec", big, "true").returncode == 0
    acts = events_of(stack, big, since)
    assert acts.index("pause") < acts.index("commit") and "unpause" in acts, acts
    stack.docker("rmi", "dy-commit-paused")


def test_commit_pause_false_never_pauses(stack, big):
    since = time.time() - 1
    r, paused, frozen = commit_watching(stack, big, pause="0", repo="dy-commit-nopause")
    assert r.status_code == 201, r.text
    assert paused == {False} and "FROZEN" not in frozen, (paused, frozen)
    assert "pause" not in events_of(stack, big, since)
    stack.docker("rmi", "dy-commit-nopause")


def test_commit_of_a_paused_container_leaves_it_paused(stack, big):
    assert stack.docker("pause", big).returncode == 0
    since = time.time() - 0.5
    r, paused, _ = commit_watching(stack, big)
    assert r.status_code == 201, r.text
    assert paused == {True}
    st = state(stack, big)
    assert st["Paused"] and st["Status"] == "paused"
    assert "unpause" not in events_of(stack, big, since)
    assert stack.docker("unpause", big).returncode == 0


def test_a_failed_commit_resumes_the_container(stack, big):
    r, paused, _ = commit_watching(stack, big, changes="BOGUS instruction")
    assert r.status_code == 400, r.text
    assert r.json()["message"]
    st = state(stack, big)
    assert st["Running"] and not st["Paused"], st


def test_concurrent_commits_share_one_pause(stack, big):
    rs = []

    def one():
        with stack.http() as c:
            rs.append(c.post("/commit", params={"container": big}, timeout=120))

    ts = [threading.Thread(target=one) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert [r.status_code for r in rs] == [201, 201], [r.text for r in rs]
    st = state(stack, big)
    assert st["Running"] and not st["Paused"], st
