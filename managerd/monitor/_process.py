"""dockyard monitor: the per-task supervisor process that outlives managerd.

managerd starts one per task (``dockyard.managerd.monitor.client.spawn``) as::

    python -I -S _process.py --dir STATE [--log FILE [--log-max-size BYTES]
        [--log-max-files N]] [--stdin] [--terminal] --pid-file FILE \\
        -- RUNTIME ... create --bundle B --pid-file FILE ID

or with ``--defer --`` and no runtime argv: the init's stdio is made and the
handshake says ``ok 0`` at once; the init comes later with a ``run`` request
(the runtime's ``run --detach``, create and start in one runtime process).

in a session of its own, so a ``kill -9`` of managerd leaves it running (usually
it is forked by the monitor zygote, ``_zygote.py``, which calls ``main(options)``
in the child instead: same program, no interpreter start-up). It owns, for one
container:

- being the parent of the init and of every exec process: it is a child
  subreaper (prctl PR_SET_CHILD_SUBREAPER) and runs the runtime's ``create`` and
  ``exec --detach`` itself, so what those leave behind is re-parented to it;
- their stdio: pipes it creates, or the pty master the runtime hands over on a
  console socket (runc's protocol: one message with the master in SCM_RIGHTS);
- the Docker json-file log of the init's stdout/stderr
  (``{"log":"...\\n","stream":"stdout","time":"RFC3339Nano"}`` per line, lines
  over 16 KiB split like Docker does), rotated at max-size into max-file files;
- reaping, and the init's exit status and time, written atomically to
  ``STATE/exit`` as ``"<status> <unix-ns>\\n"`` (status 128+N for signal N);
- attach clients on ``STATE/monitor.sock``.

It must not: import anything beyond the interpreter's built-in modules (its RSS
per container is a benchmark figure, next to containerd-shim-runc-v2's), run
any other runtime verb (managerd runs start/kill/delete/... itself), or exit
before managerd sends ``shutdown`` (after the runtime's ``delete``).

Handshake: on fd 1 the monitor writes one line once ``create`` is done,
``ok <init-pid>`` or ``fail <runtime-exit-code>`` (managerd then reads the
runtime's log.json), or ``error <message>``; then fd 1 becomes /dev/null.

Wire protocol on monitor.sock. Every message is a frame: one type byte, a
4-byte big-endian length, the payload. Requests and replies carry fields
separated by NUL bytes. A connection starts with one request:

=================================  =======================================  ==========================
client sends (``Q`` frame)          monitor answers                          afterwards
=================================  =======================================  ==========================
``state``                           ``R`` ``id:pid:status:ns`` per process   closed; id "" is the init,
                                                                             status/ns empty if running
``subscribe``                       ``R``, then ``V exit,id,pid,status,ns``  open; exits already known
                                    per exit                                 are replayed first
``run,PIDFILE,argv...``              ``R pid`` or ``E fail,<runtime-rc>``     closed (a deferred init:
                                                                             after the runtime exits)
``exec-add,ID,stdin,terminal``      ``R`` (pipes made, attach possible)      closed
``exec-start,ID,PIDFILE,argv...``   ``R pid`` or ``E fail,<runtime-rc>``     closed (after the runtime
                                                                             exits and, for a tty, the
                                                                             master arrived)
``exec-delete,ID``                  ``R``                                    closed
``attach,ID,streams``               ``R``; then ``1``/``2`` output frames,   open: client may send
(streams ⊆ "ioe")                   ``X`` when the output ended              ``0`` stdin bytes, ``C``
                                                                             close stdin, ``Z rows,cols``
``resize,ID,rows,cols``             ``R``                                    closed
``signal,ID,SIG``                   ``R`` (sent to the exec process ID while  closed
                                    not reaped: never to a reused pid)
``closeio,ID``                      ``R``                                    closed
``shutdown[,force]``                ``R``, then the monitor exits            (refused with ``E`` while
                                                                             the init runs, unless force)
=================================  =======================================  ==========================

Any error answers ``E <message>``. Closing stdin of a tty process writes ^D to
the master (what a terminal user would type): a tty has no separate EOF.
"""

import _signal
import _socket
import os
import select
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
TIOCSWINSZ = 0x5414  # asm-generic ioctls.h (x86, arm, riscv)
LOG_LINE_MAX = 16 * 1024  # Docker's json-file splits longer lines
BACKLOG_MAX = 64 * 1024  # exec output kept for a client that attaches late
CLIENT_BUF_MAX = 8 << 20  # a client that lags this far behind is dropped
STDIN_BUF_MAX = 1 << 20  # beyond this, stop reading stdin from clients
EXIT_GRACE = 2.0  # seconds attach clients wait for output after the process exited
MASTER_WAIT = 30.0  # seconds to wait for the pty master (containerd waits 30 s too)

# frame types
REQ, REPLY, ERR, EVENT = b"Q"[0], b"R"[0], b"E"[0], b"V"[0]
STDIN, STDOUT, STDERR = b"0"[0], b"1"[0], b"2"[0]
CLOSE_STDIN, RESIZE, END = b"C"[0], b"Z"[0], b"X"[0]
INIT = ""  # process id of the container's init

EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP = (select.EPOLLIN, select.EPOLLOUT,
                                         select.EPOLLERR, select.EPOLLHUP)


def frame(kind: int, payload: bytes = b"") -> bytes:
    """Encode one frame."""
    return bytes((kind,)) + len(payload).to_bytes(4, "big") + payload


def pack(*items: object) -> bytes:
    """Join fields with NUL."""
    return "\0".join(str(i) for i in items).encode()


def unpack(payload: bytes) -> list[str]:
    """Split a NUL-separated payload into fields."""
    return payload.decode("utf-8", "replace").split("\0") if payload else []


def take_frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """Remove and return every complete frame at the start of buf."""
    out = []
    while len(buf) >= 5:
        n = int.from_bytes(buf[1:5], "big")
        if len(buf) < 5 + n:
            break
        out.append((buf[0], bytes(buf[5:5 + n])))
        del buf[:5 + n]
    return out


# JSON string escaping without the json module (it costs ~1 MB of RSS).
_ESC = {i: f"\\u{i:04x}" for i in range(32)}
_ESC.update({ord('"'): '\\"', ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r",
             ord("\t"): "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def rfc3339nano(ns: int) -> str:
    """UTC time as RFC 3339 with nanoseconds (Docker's log timestamps)."""
    t = time.gmtime(ns // 1_000_000_000)
    return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:"
            f"{t.tm_sec:02d}.{ns % 1_000_000_000:09d}Z")


def log_record(data: bytes, stream: str, ns: int) -> bytes:
    """One json-file line for data (invalid UTF-8 becomes U+FFFD, as in Docker)."""
    text = data.decode("utf-8", "replace").translate(_ESC)
    return (f'{{"log":"{text}","stream":"{stream}","time":"{rfc3339nano(ns)}"}}\n').encode()


def write_atomic(path: str, data: bytes) -> None:
    """Write path via a temp file and a rename: readers never see half a file.

    No fsync: the state dir is volatile (/run), so only a crash of a process, never
    of the machine, must be survived, and the page cache outlives processes.
    """
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def set_subreaper() -> None:
    """prctl(PR_SET_CHILD_SUBREAPER, 1): orphans of the runtime become our children."""
    import ctypes  # only here: imported once, at start-up

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "prctl(PR_SET_CHILD_SUBREAPER): " + os.strerror(err))


class Conn:
    """A client connection on monitor.sock."""

    __slots__ = ("sock", "fd", "rbuf", "wbuf", "mode", "proc", "streams", "closing", "paused")

    def __init__(self, sock):
        self.sock = sock
        self.fd = sock.fileno()
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.mode = ""  # "" (expecting a request), "attach", "sub", "wait" (exec-start)
        self.proc = None
        self.streams = ""
        self.closing = False  # close once wbuf is flushed
        self.paused = False  # not reading: the process's stdin buffer is full


class Proc:
    """The init or one exec process, with its stdio."""

    __slots__ = ("id", "pid", "status", "exited_ns", "terminal", "stdin_fd", "stdin_buf",
                 "stdin_close", "outs", "master", "log", "partial", "clients", "backlog",
                 "size", "spawn_pid", "waiter", "pid_file", "console", "console_dir",
                 "attached_once", "ended", "child_fds", "started")

    def __init__(self, pid_id: str, terminal: bool):
        self.id = pid_id
        self.pid = 0
        self.status = None  # exit status once reaped
        self.exited_ns = 0
        self.terminal = terminal
        self.stdin_fd = -1  # our end of the process's stdin (the master for a tty)
        self.stdin_buf = bytearray()
        self.stdin_close = False  # close stdin once stdin_buf is written
        self.outs = {}  # fd -> STDOUT/STDERR, read ends (or the master)
        self.master = -1
        self.log = -1  # json-file log fd (init only)
        self.partial = {STDOUT: bytearray(), STDERR: bytearray()}
        self.clients = []
        self.backlog = bytearray()
        self.size = None  # (rows, cols) to apply once the master arrives
        self.spawn_pid = 0  # the runtime process running create/exec for us
        self.waiter = None  # Conn waiting for exec-start's answer
        self.pid_file = ""
        self.console = None  # listening console socket while waiting for the master
        self.console_dir = ""
        self.attached_once = False
        self.ended = False  # attach clients were sent END
        self.child_fds = []  # the process's ends of its pipes, until spawned
        self.started = False


class Monitor:
    """The event loop: one epoll over the listener, clients, pipes and SIGCHLD."""

    def __init__(self, state_dir: str, log_path: str, log_max_size: int = 0,
                 log_max_files: int = 1):
        self.dir = state_dir
        self.log_path = log_path
        self.log_max_size = log_max_size  # bytes; 0: unlimited (Docker's max-size)
        self.log_max_files = max(1, log_max_files)  # Docker's max-file
        self.log_size = 0
        self.ep = select.epoll()
        self.handlers = {}  # fd -> (callable(events), registered mask)
        self.procs = {}  # id -> Proc
        self.conns = {}  # fd -> Conn
        self.subs = []
        self.early = {}  # pid -> (status, ns): reaped before we learnt whose it was
        self.timers = []  # (deadline, callable)
        self.handshake_fd = 1
        self.running = True
        self.listener = None
        self.devnull = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        self.console_seq = 0

    # -- epoll plumbing -------------------------------------------------------------
    def watch(self, fd: int, handler, mask: int = EPOLLIN) -> None:
        if fd in self.handlers:
            self.ep.modify(fd, mask)
        else:
            self.ep.register(fd, mask)
        self.handlers[fd] = (handler, mask)

    def unwatch(self, fd: int) -> None:
        if self.handlers.pop(fd, None) is not None:
            self.ep.unregister(fd)

    def set_mask(self, fd: int, mask: int) -> None:
        entry = self.handlers.get(fd)
        if entry is not None and entry[1] != mask:
            self.ep.modify(fd, mask)
            self.handlers[fd] = (entry[0], mask)

    def later(self, delay: float, fn) -> None:
        self.timers.append((time.monotonic() + delay, fn))

    def run(self) -> None:
        while self.running:
            timeout = -1.0
            if self.timers:
                timeout = max(0.0, min(t for t, _ in self.timers) - time.monotonic())
            for fd, events in self.ep.poll(timeout):
                entry = self.handlers.get(fd)
                if entry is not None:
                    self.call(entry[0], events)
            if self.timers:
                now = time.monotonic()
                due = [t for t in self.timers if t[0] <= now]
                self.timers = [t for t in self.timers if t[0] > now]
                for _, fn in due:
                    self.call(fn)

    @staticmethod
    def call(fn, *args) -> None:
        """Run a handler; a failure is reported on stderr (monitor.log), never fatal:
        the container must keep its supervisor."""
        try:
            fn(*args)
        except Exception as err:
            try:
                os.write(2, f"monitor: {type(err).__name__}: {err}\n".encode())
            except OSError:
                pass

    # -- start-up --------------------------------------------------------------------
    def start(self, argv: list[str], pid_file: str, stdin: bool, terminal: bool,
              defer: bool = False) -> None:
        """Listen, then run the runtime's create with the init's stdio (with defer: make
        the stdio, report ``ok 0`` at once and leave the init to a ``run`` request)."""
        # the spawning thread's mask is inherited across exec: a blocked SIGCHLD would
        # leave every exit unreaped
        _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        _signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        _signal.signal(_signal.SIGCHLD, lambda *_: None)
        self.watch(r, lambda ev: self.on_sigchld(r))

        if os.path.lexists("monitor.sock"):
            os.unlink("monitor.sock")
        self.listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        self.listener.bind("monitor.sock")  # relative: the state dir path may exceed 108 bytes
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.watch(self.listener.fileno(), self.on_accept)

        init = Proc(INIT, terminal)
        if self.log_path:
            init.log = self.open_log()
        self.procs[INIT] = init
        self.make_stdio(init, stdin)
        init.pid_file = pid_file
        if defer:
            self.answer(init, True, "0")
            return
        self.spawn(init, argv)

    def make_stdio(self, proc: Proc, stdin: bool) -> None:
        """Pipes for a process without a tty; the tty case waits for the master."""
        if proc.terminal:
            proc.child_fds = [self.devnull, self.devnull, self.devnull]
            return
        fds = []
        if stdin:
            r, w = os.pipe()
            os.set_blocking(w, False)
            proc.stdin_fd = w
            fds.append(r)
        else:
            fds.append(self.devnull)
        for kind in (STDOUT, STDERR):
            r, w = os.pipe()
            os.set_blocking(r, False)
            proc.outs[r] = kind
            self.watch(r, lambda ev, fd=r, p=proc: self.on_output(p, fd))
            fds.append(w)
        proc.child_fds = fds

    def console_socket(self, proc: Proc) -> str:
        """Listen on a fresh console socket (short path: sun_path has 108 bytes)."""
        self.console_seq += 1
        tmp = os.environ.get("TMPDIR", "/tmp")
        proc.console_dir = (f"{tmp}/dy-pty-{os.getpid()}-{self.console_seq}-"
                            f"{time.monotonic_ns() % 100000}")
        os.mkdir(proc.console_dir, 0o700)
        path = proc.console_dir + "/pty.sock"
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        sock.bind(path)
        sock.listen(1)
        sock.setblocking(False)
        proc.console = sock
        self.watch(sock.fileno(), lambda ev, p=proc: self.on_console(p))
        return path

    def close_console(self, proc: Proc) -> None:
        if proc.console is not None:
            self.unwatch(proc.console.fileno())
            proc.console.close()
            proc.console = None
            try:
                os.unlink(proc.console_dir + "/pty.sock")
                os.rmdir(proc.console_dir)
            except OSError:
                pass

    def spawn(self, proc: Proc, argv: list[str]) -> None:
        """Run the runtime (create or exec) with the process's stdio as its own."""
        if proc.terminal:
            # go-runc order: flags, then the container id last
            argv = argv[:-1] + ["--console-socket", self.console_socket(proc)] + argv[-1:]
        env = os.environ
        if argv[0].startswith(("TRACEPARENT=", "DOCKYARD_TRACE_DIR=")):
            # a traced call (managerd/trace.py): leading NAME=VALUE words go to this
            # runtime's environment only
            env, argv = dict(os.environ), list(argv)
            while argv[0].startswith(("TRACEPARENT=", "DOCKYARD_TRACE_DIR=")):
                name, _, value = argv.pop(0).partition("=")
                env[name] = value
        actions = [(os.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(proc.child_fds)]
        spawner = os.posix_spawn if "/" in argv[0] else os.posix_spawnp
        try:
            # what subprocess's restore_signals does: Python ignores SIGPIPE and SIGXFSZ,
            # and ignored signals would stay ignored in the runtime and the container
            proc.spawn_pid = spawner(argv[0], argv, env, file_actions=actions,
                                     setsigmask=(), setsigdef=(_signal.SIGPIPE,
                                                               _signal.SIGXFSZ))
        finally:
            for fd in proc.child_fds:
                if fd != self.devnull:
                    os.close(fd)
            proc.child_fds = []
        proc.started = True

    # -- children ---------------------------------------------------------------------
    def on_sigchld(self, rfd: int) -> None:
        try:
            while os.read(rfd, 512):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                pid, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            code = os.waitstatus_to_exitcode(st)
            self.on_reaped(pid, 128 - code if code < 0 else code, time.time_ns())
        self.forget_early()

    def forget_early(self) -> None:
        """Drop exits of unknown pids once no runtime runs: nobody can claim them.

        A process whose pid we learn later from a runtime's pid file is that
        runtime's child; we can reap it only once the runtime died, and the kernel
        makes the runtime a zombie in the same step (so the same waitpid batch
        reaps both and on_runtime_done claims the exit). An entry left over after
        that was never ours to report: kept, it would be taken for the exit of a
        later exec that gets the same pid (pid_max is 32768 on many hosts), which
        would be reported exited the moment it started."""
        if self.early and not any(p.spawn_pid for p in self.procs.values()):
            self.early.clear()

    def on_reaped(self, pid: int, status: int, ns: int) -> None:
        for proc in self.procs.values():
            if proc.spawn_pid == pid:
                proc.spawn_pid = 0
                self.on_runtime_done(proc, status)
                return
            if proc.pid == pid and proc.status is None:
                self.on_exit(proc, status, ns)
                return
        self.early[pid] = (status, ns)
        if len(self.early) > 256:
            del self.early[next(iter(self.early))]

    def on_runtime_done(self, proc: Proc, rc: int) -> None:
        """The runtime's create/exec exited: learn the pid, or report the failure."""
        if rc != 0:
            self.close_console(proc)
            self.close_stdio(proc)
            proc.status = -1
            self.answer(proc, False, f"fail\0{rc}")
            return
        try:
            with open(proc.pid_file, "rb") as f:
                proc.pid = int(f.read().strip())
        except (OSError, ValueError) as err:
            self.answer(proc, False, f"error\0pid file {proc.pid_file}: {err}")
            return
        if proc.terminal and proc.master < 0:
            self.later(MASTER_WAIT, lambda p=proc: self.master_timeout(p))
        else:
            self.answer(proc, True, str(proc.pid))
        early = self.early.pop(proc.pid, None)
        if early is not None:
            self.on_exit(proc, *early)

    def master_timeout(self, proc: Proc) -> None:
        if proc.master < 0 and (proc.waiter is not None or proc.id == INIT):
            self.close_console(proc)
            self.answer(proc, False, "error\0no pty master received on the console socket")

    def answer(self, proc: Proc, ok: bool, text: str) -> None:
        """Report the outcome of create (handshake line), or of run / exec-start (reply
        frame to the client waiting for it)."""
        if proc.id == INIT and proc.waiter is None:
            if self.handshake_fd < 0:
                return
            line = ("ok " + text) if ok else text.replace("\0", " ")
            os.write(self.handshake_fd, (line + "\n").encode())
            os.dup2(self.devnull, self.handshake_fd)
            self.handshake_fd = -1
            if not ok:
                self.running = False  # nothing to supervise
            return
        conn, proc.waiter = proc.waiter, None
        if conn is not None:
            self.send(conn, frame(REPLY if ok else ERR, text.encode()), close=True)

    def on_exit(self, proc: Proc, status: int, ns: int) -> None:
        proc.status, proc.exited_ns = status, ns
        # subscribers first: managerd begins the task's cleanup on this event, and creating
        # the exit file can take milliseconds on a busy disk. The file is for a managerd
        # that was not listening; it is written before this loop serves any request (a
        # shutdown included), and a monitor that dies in between is reported as a 255.
        event = frame(EVENT, pack("exit", proc.id, proc.pid, status, ns))
        for conn in self.subs:
            self.send(conn, event)
        if proc.id == INIT:
            try:
                write_atomic("exit", b"%d %d\n" % (status, ns))
            except OSError as err:  # subscribers heard it above
                os.write(2, f"monitor: cannot record the exit: {err}\n".encode())
        if proc.outs:
            self.later(EXIT_GRACE, lambda p=proc: self.end_attach(p))
        else:
            self.end_attach(proc)

    # -- the console socket ---------------------------------------------------------
    def on_console(self, proc: Proc) -> None:
        try:
            fd, _ = proc.console._accept()
        except BlockingIOError:
            return
        conn = _socket.socket(fileno=fd)
        try:
            conn.settimeout(5)
            _, anc, _, _ = conn.recvmsg(4096, _socket.CMSG_SPACE(4 * 4))
        except OSError:
            anc = []
        finally:
            conn.close()
        fds = [int.from_bytes(data[i:i + 4], sys.byteorder)
               for level, kind, data in anc
               if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS
               for i in range(0, len(data) - len(data) % 4, 4)]
        if not fds:
            return  # a connection without a master: keep listening
        for extra in fds[1:]:
            os.close(extra)
        master = fds[0]
        os.set_inheritable(master, False)
        os.set_blocking(master, False)
        self.close_console(proc)
        proc.master = proc.stdin_fd = master
        proc.outs[master] = STDOUT
        self.watch(master, lambda ev, p=proc: self.on_master(p, ev))
        if proc.size:
            self.resize(proc, *proc.size)
        if proc.pid and proc.spawn_pid == 0:  # the runtime already exited successfully
            self.answer(proc, True, str(proc.pid))

    # -- output -----------------------------------------------------------------------
    def on_master(self, proc: Proc, events: int) -> None:
        if events & EPOLLOUT:
            self.flush_stdin(proc)
        if events & (EPOLLIN | EPOLLHUP | EPOLLERR) and proc.master >= 0:
            self.on_output(proc, proc.master)

    def on_output(self, proc: Proc, fd: int) -> None:
        kind = proc.outs[fd]
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: every slave of the pty is closed
            data = b""
        if not data:
            self.close_out(proc, fd)
            return
        if proc.log >= 0:
            self.log(proc, kind, data)
        out = frame(kind, data)
        wanted = "o" if kind == STDOUT else "e"
        sent = False
        for conn in proc.clients:
            if wanted in conn.streams:
                self.send(conn, out)
                sent = True
        if not sent and proc.id != INIT and not proc.attached_once:
            proc.backlog += out
            if len(proc.backlog) > BACKLOG_MAX:
                del proc.backlog[:len(proc.backlog) - BACKLOG_MAX]

    def close_out(self, proc: Proc, fd: int) -> None:
        kind = proc.outs.pop(fd)
        self.unwatch(fd)
        if fd == proc.master:
            proc.master = proc.stdin_fd = -1
        os.close(fd)
        if proc.log >= 0 and proc.partial[kind]:
            self.write_log(proc, [log_record(bytes(proc.partial[kind]), self.stream(kind),
                                             time.time_ns())])
            proc.partial[kind].clear()
        if not proc.outs:
            self.end_attach(proc)

    @staticmethod
    def stream(kind: int) -> str:
        return "stdout" if kind == STDOUT else "stderr"

    def log(self, proc: Proc, kind: int, data: bytes) -> None:
        buf = proc.partial[kind]
        buf += data
        ns = time.time_ns()
        end = buf.rfind(b"\n") + 1
        if not end and len(buf) < LOG_LINE_MAX:
            return  # no complete line yet
        lines = bytes(buf[:end]).split(b"\n")
        lines.pop()  # what follows the last newline stays in buf
        if lines and max(map(len, lines)) < LOG_LINE_MAX and len(buf) - end < LOG_LINE_MAX:
            # the common case, in bulk: one timestamp per read, one escape per line
            del buf[:end]
            tail = f'\\n","stream":"{self.stream(kind)}","time":"{rfc3339nano(ns)}"}}\n'
            records = ['{"log":"' + line.decode("utf-8", "replace").translate(_ESC) + tail
                       for line in lines]
            self.write_log(proc, [r.encode() for r in records] if self.log_max_size
                           else ["".join(records).encode()])
            return
        out = []
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0 or nl - start >= LOG_LINE_MAX:
                if len(buf) - start >= LOG_LINE_MAX:
                    out.append(log_record(bytes(buf[start:start + LOG_LINE_MAX]),
                                          self.stream(kind), ns))
                    start += LOG_LINE_MAX
                    continue
                break
            out.append(log_record(bytes(buf[start:nl + 1]), self.stream(kind), ns))
            start = nl + 1
        del buf[:start]
        if out:
            self.write_log(proc, out)

    def open_log(self) -> int:
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.log_size = os.fstat(fd).st_size
        return fd

    def write_log(self, proc: Proc, records: list[bytes]) -> None:
        """Append records, rotating like Docker's json-file max-size/max-file (a record
        never straddles two files); on ENOSPC and the like they are dropped (Docker does
        too), the container's output keeps flowing to attach clients."""
        try:
            while records:
                batch = records
                if self.log_max_size:
                    room, n = self.log_max_size - self.log_size, 0
                    while n < len(records) and len(records[n]) <= room:
                        room -= len(records[n])
                        n += 1
                    if n == 0 and self.log_size:
                        self.rotate(proc)
                        continue
                    batch = records[:max(n, 1)]
                data = b"".join(batch)
                os.write(proc.log, data)
                self.log_size += len(data)
                records = records[len(batch):]
        except OSError as err:
            os.write(2, f"monitor: log write failed: {err}\n".encode())

    def rotate(self, proc: Proc) -> None:
        """ID-json.log -> .1 -> .2 ... (max-file files in all); max-file 1 truncates."""
        if self.log_max_files == 1:
            os.ftruncate(proc.log, 0)
            self.log_size = 0
            return
        for i in range(self.log_max_files - 1, 0, -1):
            src = self.log_path if i == 1 else f"{self.log_path}.{i - 1}"
            if os.path.exists(src):
                os.replace(src, f"{self.log_path}.{i}")
        os.close(proc.log)
        proc.log = self.open_log()

    def end_attach(self, proc: Proc) -> None:
        """The process's output is over (or it exited long enough ago): release clients."""
        if proc.ended or (proc.outs and proc.status is None):
            return
        proc.ended = True
        for conn in list(proc.clients):
            self.send(conn, frame(END), close=True)
        proc.clients.clear()

    # -- stdin ------------------------------------------------------------------------
    def write_stdin(self, proc: Proc, data: bytes) -> None:
        if proc.stdin_fd < 0 or proc.stdin_close:
            return
        proc.stdin_buf += data
        self.flush_stdin(proc)

    def flush_stdin(self, proc: Proc) -> None:
        fd = proc.stdin_fd
        if fd < 0:
            proc.stdin_buf.clear()
            return
        while proc.stdin_buf:
            try:
                n = os.write(fd, proc.stdin_buf)
            except BlockingIOError:
                break
            except OSError:  # EPIPE: the reader is gone
                proc.stdin_buf.clear()
                break
            del proc.stdin_buf[:n]
        if fd == proc.master:
            self.set_mask(fd, EPOLLIN | (EPOLLOUT if proc.stdin_buf else 0))
        elif proc.stdin_buf:
            self.watch(fd, lambda ev, p=proc: self.flush_stdin(p), EPOLLOUT)
        else:
            self.unwatch(fd)
        full = len(proc.stdin_buf) > STDIN_BUF_MAX
        for conn in proc.clients:
            if conn.paused != full:
                conn.paused = full
                self.set_mask(conn.fd, self.mask(conn))
        if proc.stdin_close and not proc.stdin_buf:
            self.close_stdin_now(proc)

    def close_stdin(self, proc: Proc) -> None:
        proc.stdin_close = True
        self.flush_stdin(proc)

    def close_stdin_now(self, proc: Proc) -> None:
        if proc.stdin_fd < 0:
            return
        if proc.stdin_fd == proc.master:
            try:
                os.write(proc.master, b"\x04")
            except OSError:
                pass
            return
        self.unwatch(proc.stdin_fd)
        os.close(proc.stdin_fd)
        proc.stdin_fd = -1

    def resize(self, proc: Proc, rows: int, cols: int) -> None:
        proc.size = (rows, cols)
        if proc.master >= 0:
            import fcntl  # only for tty tasks

            ws = rows.to_bytes(2, sys.byteorder) + cols.to_bytes(2, sys.byteorder) + bytes(4)
            fcntl.ioctl(proc.master, TIOCSWINSZ, ws)

    def close_stdio(self, proc: Proc) -> None:
        for fd in list(proc.outs):
            self.unwatch(fd)
            os.close(fd)
        proc.outs.clear()
        if proc.stdin_fd >= 0 and proc.stdin_fd != proc.master:
            self.unwatch(proc.stdin_fd)
            os.close(proc.stdin_fd)
        proc.stdin_fd = proc.master = -1
        for fd in proc.child_fds:
            if fd != self.devnull:
                os.close(fd)
        proc.child_fds = []
        if proc.log >= 0:
            os.close(proc.log)
            proc.log = -1
        for conn in list(proc.clients):
            self.send(conn, frame(END), close=True)
        proc.clients.clear()

    # -- clients ----------------------------------------------------------------------
    def on_accept(self, events: int) -> None:
        while True:
            try:
                fd, _ = self.listener._accept()
            except BlockingIOError:
                return
            sock = _socket.socket(fileno=fd)
            sock.setblocking(False)
            conn = Conn(sock)
            self.conns[fd] = conn
            self.watch(fd, lambda ev, c=conn: self.on_conn(c, ev))

    def on_conn(self, conn: Conn, events: int) -> None:
        if events & EPOLLOUT:
            self.flush(conn)
        if conn.fd not in self.conns or not events & (EPOLLIN | EPOLLHUP | EPOLLERR):
            return
        if conn.paused and not events & (EPOLLHUP | EPOLLERR):
            return
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.drop(conn)
            return
        conn.rbuf += data
        for kind, payload in take_frames(conn.rbuf):
            if conn.fd not in self.conns:
                return
            try:
                self.dispatch(conn, kind, payload)
            except Exception as err:  # a bad request must not take the monitor down
                self.send(conn, frame(ERR, (f"{type(err).__name__}: {err}").encode()),
                          close=True)

    def dispatch(self, conn: Conn, kind: int, payload: bytes) -> None:
        if conn.mode == "attach":
            proc = conn.proc
            if kind == STDIN:
                self.write_stdin(proc, payload)
            elif kind == CLOSE_STDIN:
                self.close_stdin(proc)
            elif kind == RESIZE:
                rows, cols = unpack(payload)
                self.resize(proc, int(rows), int(cols))
            return
        if conn.mode or kind != REQ:
            return  # subscribers and waiters only listen
        args = unpack(payload)
        op, args = (args[0], args[1:]) if args else ("", [])
        if op == "state":
            rows = [f"{p.id}:{p.pid}:{'' if p.status is None else p.status}:{p.exited_ns or ''}"
                    for p in self.procs.values()]
            self.send(conn, frame(REPLY, "\0".join(rows).encode()), close=True)
        elif op == "subscribe":
            conn.mode = "sub"
            self.subs.append(conn)
            self.send(conn, frame(REPLY))
            for p in self.procs.values():
                if p.status is not None and p.status >= 0:
                    self.send(conn, frame(EVENT, pack("exit", p.id, p.pid, p.status,
                                                      p.exited_ns)))
        elif op == "exec-add":
            exec_id, stdin, terminal = args
            if not exec_id or exec_id in self.procs:
                raise ValueError(f"exec id {exec_id!r} is empty or in use")
            proc = Proc(exec_id, terminal == "1")
            self.procs[exec_id] = proc
            self.make_stdio(proc, stdin == "1")
            self.send(conn, frame(REPLY), close=True)
        elif op == "run":  # a deferred init: the runtime's run --detach (create + start)
            init = self.procs[INIT]
            if init.started:
                raise ValueError("the init was started already")
            init.pid_file = args[0]
            conn.mode = "wait"
            init.waiter = conn
            self.spawn(init, args[1:])
        elif op == "exec-start":
            proc = self.proc(args[0])
            if proc.started:
                raise ValueError(f"exec {proc.id} was started already")
            proc.pid_file = args[1]
            conn.mode = "wait"
            proc.waiter = conn
            self.spawn(proc, args[2:])
        elif op == "exec-delete":
            proc = self.proc(args[0])
            if proc.id == INIT or (proc.status is None and proc.started):
                raise ValueError(f"exec {proc.id} is running")
            self.close_stdio(proc)
            self.close_console(proc)
            del self.procs[proc.id]
            self.send(conn, frame(REPLY), close=True)
        elif op == "attach":
            proc = self.proc(args[0])
            conn.mode, conn.proc, conn.streams = "attach", proc, args[1]
            self.send(conn, frame(REPLY))
            if proc.ended or (proc.status is not None and not proc.outs):
                self.send(conn, frame(END), close=True)
                return
            proc.clients.append(conn)
            if not proc.attached_once and proc.backlog:
                self.send(conn, bytes(proc.backlog))
                proc.backlog.clear()
            proc.attached_once = True
        elif op == "signal":
            proc = self.proc(args[0])
            if proc.id == INIT or not proc.pid or proc.status is not None:
                raise ValueError(f"process {proc.id!r} is not running (exited, not started, "
                                 "or the init: signal it through the runtime)")
            # not reaped yet (status None: we are its parent and reap it only in this
            # loop), so the pid is still this process, never one that reused it
            os.kill(proc.pid, int(args[1]))
            self.send(conn, frame(REPLY), close=True)
        elif op == "resize":
            self.resize(self.proc(args[0]), int(args[1]), int(args[2]))
            self.send(conn, frame(REPLY), close=True)
        elif op == "closeio":
            self.close_stdin(self.proc(args[0]))
            self.send(conn, frame(REPLY), close=True)
        elif op == "shutdown":
            init = self.procs[INIT]
            if init.pid and init.status is None and args[:1] != ["force"]:
                raise ValueError(f"the init process (pid {init.pid}) is still running")
            self.send(conn, frame(REPLY), close=True)
            self.running = False
        else:
            raise ValueError(f"unknown request {op!r}")

    def proc(self, pid_id: str) -> Proc:
        try:
            return self.procs[pid_id]
        except KeyError:
            raise ValueError(f"no process {pid_id!r} in this task") from None

    def send(self, conn: Conn, data: bytes, close: bool = False) -> None:
        if conn.fd not in self.conns:
            return
        conn.wbuf += data
        conn.closing = conn.closing or close
        if len(conn.wbuf) > CLIENT_BUF_MAX:
            self.drop(conn)  # too slow a reader: it would hold the container's output
            return
        self.flush(conn)

    def flush(self, conn: Conn) -> None:
        try:
            while conn.wbuf:
                n = conn.sock.send(conn.wbuf)
                del conn.wbuf[:n]
        except BlockingIOError:
            pass
        except OSError:
            self.drop(conn)
            return
        if conn.closing and not conn.wbuf:
            self.drop(conn)
            return
        self.set_mask(conn.fd, self.mask(conn))

    @staticmethod
    def mask(conn: Conn) -> int:
        """Read unless paused (EPOLLHUP/ERR come anyway); wait for room while owing bytes."""
        return (0 if conn.paused else EPOLLIN) | (EPOLLOUT if conn.wbuf else 0)

    def drop(self, conn: Conn) -> None:
        if self.conns.pop(conn.fd, None) is None:
            return
        self.unwatch(conn.fd)
        if conn in self.subs:
            self.subs.remove(conn)
        if conn.proc is not None and conn in conn.proc.clients:
            conn.proc.clients.remove(conn)
        for proc in self.procs.values():
            if proc.waiter is conn:
                proc.waiter = None
        conn.sock.close()

    def finish(self) -> None:
        """Flush what clients are owed, then leave nothing behind but the exit file."""
        deadline = time.monotonic() + 1.0
        while any(c.wbuf for c in self.conns.values()) and time.monotonic() < deadline:
            for fd, events in self.ep.poll(0.05):
                conn = self.conns.get(fd)
                if conn is not None and events & EPOLLOUT:
                    self.flush(conn)
        for conn in list(self.conns.values()):
            self.drop(conn)
        for proc in self.procs.values():
            self.close_console(proc)
        for name in ("monitor.sock", "monitor.pid"):
            try:
                os.unlink(name)
            except OSError:
                pass


def parse(argv: list[str]) -> dict:
    """The command line (no argparse: it costs start-up time and memory)."""
    opts = {"dir": "", "log": "", "stdin": False, "terminal": False, "pid-file": "", "argv": [],
            "log-max-size": "0", "log-max-files": "1", "defer": False}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            opts["argv"] = argv[i + 1:]
            break
        key = arg[2:]
        if key in ("stdin", "terminal", "defer"):
            opts[key] = True
        elif key in ("dir", "log", "pid-file", "log-max-size", "log-max-files") and \
                i + 1 < len(argv):
            opts[key] = argv[i + 1]
            i += 1
        else:
            raise SystemExit(f"dockyard monitor: unknown or incomplete option {arg!r}")
        i += 1
    if not opts["dir"] or not opts["pid-file"] or not (opts["argv"] or opts["defer"]):
        raise SystemExit("dockyard monitor: --dir, --pid-file and a runtime argv (or "
                         "--defer) are required")
    return opts


def main(argv: list[str] | None = None) -> int:
    """Run a monitor with these options (sys.argv[1:] by default); returns its exit code."""
    opts = parse(sys.argv[1:] if argv is None else argv)
    os.chdir(opts["dir"])
    monitor = Monitor(opts["dir"], opts["log"], int(opts["log-max-size"]),
                      int(opts["log-max-files"]))
    try:
        set_subreaper()
        write_atomic("monitor.pid", b"%d" % os.getpid())
        monitor.start(opts["argv"], opts["pid-file"], opts["stdin"], opts["terminal"],
                      opts["defer"])
    except OSError as err:
        os.write(1, (f"error monitor start-up: {err}\n").encode())
        return 1
    monitor.run()
    monitor.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
