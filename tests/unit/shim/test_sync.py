"""The sync channel's end-of-file and how `exec` reads it (sync.py, container.exec_outcome).

Regression for a detached exec reported as "Connection reset by peer": the
exec child, inside the container's pid namespace, was SIGKILLed with that
namespace (its init was killed meanwhile) before it read `proceed`; the
kernel then reports ECONNRESET, not EOF, to the parent (unix_release_sock:
the dead end still held unread data). A reset must read as end-of-file, and
end-of-file must be an exec only if the child really exec'd.
"""

from __future__ import annotations

import os
import signal

import pytest
from dockyard.shim.container import exec_outcome
from dockyard.shim.sync import Channel, Msg

pytestmark = pytest.mark.timeout(30)


def _child(chan: Channel, other: Channel, action: str) -> int:
    """Fork a child holding `chan`; it does `action` without reading anything."""
    pid = os.fork()
    if pid == 0:
        try:
            other.close()
            if action == "exec":
                os.execv("/bin/true", ["true"])
            if action == "wait":
                signal.pause()
        finally:
            os._exit(3)
    chan.close()
    return pid


def test_a_reset_reads_as_end_of_file():
    parent, child = Channel.pair()
    pid = _child(child, parent, "wait")
    parent.send(Msg.PROCEED)  # stays unread in the child's end
    os.kill(pid, signal.SIGKILL)
    try:
        assert parent.recv() is None  # not ConnectionResetError
    finally:
        parent.close()
        os.waitpid(pid, 0)


def test_a_child_killed_before_its_exec_is_a_failure_naming_the_signal():
    parent, child = Channel.pair()
    pid = _child(child, parent, "wait")
    parent.send(Msg.PROCEED)
    os.kill(pid, signal.SIGKILL)
    msg = parent.recv()
    parent.close()
    error = exec_outcome(pid, msg, "true")
    assert error is not None and "killed by signal 9" in error and "'true'" in error
    with pytest.raises(ChildProcessError):  # reaped by exec_outcome
        os.waitpid(pid, os.WNOHANG)


def test_a_child_that_exits_without_exec_is_a_failure():
    parent, child = Channel.pair()
    pid = _child(child, parent, "exit")
    msg = parent.recv()
    parent.close()
    error = exec_outcome(pid, msg, "sh")
    assert error is not None and "exited with status 3" in error


def test_end_of_file_after_a_real_exec_is_success():
    parent, child = Channel.pair()
    pid = _child(child, parent, "exec")
    parent.send(Msg.PROCEED)  # the child never reads it: still an exec, not a reset
    msg = parent.recv()
    parent.close()
    try:
        assert exec_outcome(pid, msg, "true") is None
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # /bin/true ran


def test_the_childs_error_message_wins():
    parent, child = Channel.pair()
    pid = os.fork()
    if pid == 0:
        parent.close()
        child.send(Msg.ERROR, msg="join the container's mount namespace: invalid argument")
        os._exit(1)
    child.close()
    msg = parent.recv()
    parent.close()
    assert exec_outcome(pid, msg, "true") == \
        "join the container's mount namespace: invalid argument"
