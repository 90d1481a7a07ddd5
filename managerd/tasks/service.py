"""The Tasks gRPC service: decode, call ``tasks/local.py``, map errors, encode.

Thin by design (containerd's service.go): every rule lives in TaskManager.
Namespaces come from the ``dockyard-namespace`` metadata key. Blocking calls
(Wait, Attach) hold a server thread each; Wait polls ``context.is_active()``
so an abandoned call frees its thread within a second.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import grpc
from dockyard.managerd.api._meta import namespace
from dockyard.managerd.api.errors import mapped
from dockyard.managerd.tasks.local import ProcessInfo, Status, TaskManager, TasksConfig
from dockyard.protos.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from google.protobuf import empty_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from dockyard import errdefs

__all__ = ["TasksService", "register", "SERVICE_NAME"]

log = logging.getLogger(__name__)

SERVICE_NAME = "dockyard.services.tasks.v1.Tasks"

_STATUS = {Status.UNKNOWN: tasks_pb2.UNKNOWN, Status.CREATED: tasks_pb2.CREATED,
           Status.RUNNING: tasks_pb2.RUNNING, Status.STOPPED: tasks_pb2.STOPPED,
           Status.PAUSED: tasks_pb2.PAUSED}


def _ts(ns: int) -> Timestamp:
    ts = Timestamp()
    if ns:
        ts.FromNanoseconds(ns)
    return ts


def _process(info: ProcessInfo) -> tasks_pb2.Process:
    return tasks_pb2.Process(container_id=info.container_id, exec_id=info.exec_id, pid=info.pid,
                             status=_STATUS[info.status], terminal=info.terminal,
                             stdin=info.stdin, exit_status=info.exit_status,
                             exited_at=_ts(info.exited_at), log_path=info.log_path,
                             runtime=info.runtime)


def _size(size: tasks_pb2.ConsoleSize) -> tuple[int, int] | None:
    return (size.height, size.width) if size.height and size.width else None


DEFER_METADATA = "dockyard-defer-create"


def _defer_requested(context) -> bool:
    """Metadata ``dockyard-defer-create: 1`` on Create: the client starts the task right
    away, so the runtime's create may wait for Start (see TaskManager.create)."""
    for key, value in context.invocation_metadata() or ():
        if key == DEFER_METADATA:
            return value in ("1", "true")
    return False


def _required(value: str, what: str) -> str:
    if not value:
        raise errdefs.InvalidArgument(f"{what} is required")
    return value


class TasksService(tasks_pb2_grpc.TasksServicer):
    def __init__(self, tasks: TaskManager) -> None:
        self.tasks = tasks

    def Create(self, request, context):
        with mapped(context, "Tasks"):
            if request.checkpoint:
                raise errdefs.InvalidArgument("checkpoint/restore is not supported")
            info = self.tasks.create(namespace(context), _required(request.container_id,
                                                             "container_id"),
                                     stdin=request.stdin, terminal=request.terminal,
                                     console_size=_size(request.console_size),
                                     log_path=request.log_path,
                                     log_max_size=request.log_max_size,
                                     log_max_files=request.log_max_files,
                                     defer=_defer_requested(context))
            return tasks_pb2.CreateTaskResponse(container_id=info.container_id, pid=info.pid)

    def Start(self, request, context):
        with mapped(context, "Tasks"):
            info = self.tasks.start(namespace(context), request.container_id, request.exec_id)
            return tasks_pb2.StartResponse(pid=info.pid)

    def Delete(self, request, context):
        with mapped(context, "Tasks"):
            info = self.tasks.delete(namespace(context), request.container_id, request.exec_id,
                                     force=request.force)
            return tasks_pb2.DeleteResponse(container_id=info.container_id,
                                            exec_id=info.exec_id, pid=info.pid,
                                            exit_status=info.exit_status,
                                            exited_at=_ts(info.exited_at))

    def Get(self, request, context):
        with mapped(context, "Tasks"):
            info = self.tasks.get(namespace(context), request.container_id, request.exec_id)
            return tasks_pb2.GetResponse(process=_process(info))

    def List(self, request, context):
        with mapped(context, "Tasks"):
            infos = self.tasks.list(namespace(context), list(request.container_ids))
            return tasks_pb2.ListTasksResponse(tasks=[_process(i) for i in infos])

    def Kill(self, request, context):
        with mapped(context, "Tasks"):
            self.tasks.kill(namespace(context), request.container_id, request.signal,
                            all_processes=request.all, exec_id=request.exec_id)
            return empty_pb2.Empty()

    def Exec(self, request, context):
        with mapped(context, "Tasks"):
            self.tasks.exec(namespace(context), request.container_id,
                            _required(request.exec_id, "exec_id"), request.spec,
                            terminal=request.terminal, stdin=request.stdin,
                            console_size=_size(request.console_size))
            return empty_pb2.Empty()

    def ResizePty(self, request, context):
        with mapped(context, "Tasks"):
            self.tasks.resize_pty(namespace(context), request.container_id, request.height,
                                  request.width, exec_id=request.exec_id)
            return empty_pb2.Empty()

    def CloseIO(self, request, context):
        with mapped(context, "Tasks"):
            self.tasks.close_io(namespace(context), request.container_id, request.exec_id)
            return empty_pb2.Empty()

    def Pause(self, request, context):
        with mapped(context, "Tasks"):
            self.tasks.pause(namespace(context), request.container_id)
            return empty_pb2.Empty()

    def Resume(self, request, context):
        with mapped(context, "Tasks"):
            self.tasks.resume(namespace(context), request.container_id)
            return empty_pb2.Empty()

    def ListPids(self, request, context):
        with mapped(context, "Tasks"):
            return tasks_pb2.ListPidsResponse(pids=self.tasks.pids(namespace(context),
                                                                   request.container_id))

    def Update(self, request, context):
        with mapped(context, "Tasks"):
            self.tasks.update(namespace(context), request.container_id, request.resources)
            return empty_pb2.Empty()

    def Metrics(self, request, context):
        with mapped(context, "Tasks"):
            data = self.tasks.metrics(namespace(context), request.container_id)
            return tasks_pb2.MetricsResponse(container_id=request.container_id,
                                             timestamp=_ts(time.time_ns()),
                                             stats=json.dumps(data).encode())

    def Wait(self, request, context):
        with mapped(context, "Tasks"):
            info = self.tasks.wait(namespace(context), request.container_id, request.exec_id,
                                   alive=context.is_active)
            return tasks_pb2.WaitResponse(exit_status=info.exit_status,
                                          exited_at=_ts(info.exited_at))

    def Attach(self, request_iterator, context):
        with mapped(context, "Tasks"):
            try:
                first = next(request_iterator)
            except StopIteration:
                raise errdefs.InvalidArgument("attach: no open message") from None
            if first.WhichOneof("msg") != "open":
                raise errdefs.InvalidArgument("attach: the first message must be `open`")
            o = first.open
            if not (o.stdin or o.stdout or o.stderr):
                raise errdefs.InvalidArgument("attach: choose at least one of stdin, stdout, "
                                              "stderr")
            stream = self.tasks.attach(namespace(context), _required(o.container_id, "container_id"),
                                       o.exec_id, o.stdin, o.stdout, o.stderr)
        context.add_callback(stream.close)
        threading.Thread(target=_pump_input, args=(request_iterator, stream),
                         name="tasks-attach-input", daemon=True).start()
        yield tasks_pb2.AttachResponse(attached=True)
        try:
            for name, data in stream.frames():
                yield tasks_pb2.AttachResponse(
                    stream=tasks_pb2.STDOUT if name == "stdout" else tasks_pb2.STDERR,
                    data=data)
        except OSError as err:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"attach: monitor connection lost: {err}")
        finally:
            stream.close()


def _pump_input(requests, stream) -> None:
    """Client -> process: stdin bytes, close, resize; ends with the call."""
    try:
        for req in requests:
            kind = req.WhichOneof("msg")
            if kind == "stdin":
                stream.write(req.stdin)
            elif kind == "close_stdin" and req.close_stdin:
                stream.close_stdin()
            elif kind == "resize" and req.resize.height and req.resize.width:
                stream.resize(req.resize.height, req.resize.width)
    except (grpc.RpcError, errdefs.EngineError, ValueError):
        pass  # the call ended, or the monitor side did: the output side reports it
    except Exception:
        log.exception("attach input pump failed")


def register(ctx, server: grpc.Server) -> list[str]:
    """Build the TaskManager, recover tasks left by a previous managerd, serve Tasks."""
    cfg = ctx.config
    tasks = TaskManager(
        TasksConfig(state=cfg.state,
                    runtime=getattr(cfg, "runtime", "dockyard-shim"),
                    log_root=getattr(cfg, "log_root", "/var/lib/dockyard/containers"),
                    recovered_events_delay=getattr(cfg, "recovered_events_delay", 5.0)),
        ctx.containers, ctx.snapshots, ctx.events)
    checks = getattr(ctx.containers, "delete_checks", None)
    if checks is not None:
        checks.append(tasks.check_container_delete)
    tasks.recover()
    ctx.extras["tasks"] = tasks
    ctx.on_shutdown(tasks.close)
    tasks_pb2_grpc.add_TasksServicer_to_server(TasksService(tasks), server)
    return [SERVICE_NAME]
