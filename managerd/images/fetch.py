"""Blob downloads into the content store: verified, resumable, once per digest.

Owns the Fetcher: a thread pool that streams registry blobs into content
writers (the store checks size and digest at commit: a blob is never visible
half-written or unverified), resumes partial ingests with Range requests,
retries broken downloads, and shares one download among every pull that
wants the same digest at the same time. A Tap lets the puller unpack a layer
while it downloads (bytes are handed over as they arrive, up to a memory
limit; past it the puller reads the committed blob instead).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from dockyard.errdefs import AlreadyExists, InvalidArgument, Unavailable

from .apply import LayerError
from .manifest import Descriptor
from .progress import DOWNLOADED, DOWNLOADING, VERIFYING, Progress, ProgressFn, short_id
from .registry import Endpoint

__all__ = ["Fetcher", "Tap", "OVERFLOW", "Cancelled"]

log = logging.getLogger(__name__)

OVERFLOW = object()  # Tap.get(): the tap gave up buffering; read the committed blob


class Cancelled(Exception):
    """Every pull that wanted this download gave up."""


class Tap:
    """Bytes of a download as they arrive, for one reader, with a buffer limit."""

    def __init__(self, limit: int = 64 << 20):
        self._chunks: collections.deque[bytes] = collections.deque()
        self._cond = threading.Condition()
        self._size = 0
        self._limit = limit
        self._state: object | None = None  # None=open, True=done, OVERFLOW, or an exception

    def put(self, chunk: bytes) -> None:
        with self._cond:
            if self._state is not None:
                return
            if self._size + len(chunk) > self._limit:
                self._state = OVERFLOW
                self._chunks.clear()
            else:
                self._chunks.append(chunk)
                self._size += len(chunk)
            self._cond.notify()

    def detach(self) -> None:
        """Stop buffering (the reader will read the committed blob)."""
        with self._cond:
            if self._state is None:
                self._state = OVERFLOW
                self._chunks.clear()
            self._cond.notify()

    def finish(self, error: BaseException | None = None) -> None:
        with self._cond:
            if self._state is None:
                self._state = error if error is not None else True
            self._cond.notify()

    def get(self) -> bytes | None | object:
        """The next chunk; None at the end; OVERFLOW if the reader must switch to the blob.

        Raises:
            the download's error.
        """
        with self._cond:
            while not self._chunks and self._state is None:
                self._cond.wait()
            if self._chunks:
                chunk = self._chunks.popleft()
                self._size -= len(chunk)
                return chunk
            if self._state is True:
                return None
            if self._state is OVERFLOW:
                return OVERFLOW
            raise self._state  # type: ignore[misc]


@dataclass
class _Job:
    future: Future
    waiters: int = 1
    ns: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)


class Fetcher:
    """Downloads blobs into a namespaced content store (managerd's content/local.Content)."""

    def __init__(self, content, max_concurrent: int = 3, retries: int = 4):
        self.content = content
        self.retries = retries
        self._pool = ThreadPoolExecutor(max_concurrent, thread_name_prefix="fetch")
        self._jobs: dict[tuple[str, str], _Job] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def fetch(self, ns: str, endpoint: Endpoint, repo: str, desc: Descriptor,
              lease: str | None, progress: ProgressFn, tap: Tap | None = None,
              labels: dict[str, str] | None = None) -> tuple[Future, _Job, bool]:
        """Start (or join) the download of desc; returns (future, job, started_here).

        The tap is fed only when this call starts the download.
        """
        key = desc.digest  # blob files are shared by every namespace: fetch once
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and not job.future.done() and not job.cancel.is_set():
                job.waiters += 1
                if job.ns == ns:
                    return job.future, job, False
                return self._record_after(job, ns, desc, lease), job, False
            # a download every pull gave up (cancelled) may still be stopping: ours
            # starts once it has let go of the ingest, and resumes what it wrote
            stopping = job.future if job is not None and not job.future.done() else None
            fut: Future = Future()
            job = _Job(fut, ns=ns)
            self._jobs[key] = job

        def run() -> None:
            try:
                self._download(ns, endpoint, repo, desc, lease, progress, tap, job, labels)
            except BaseException as err:  # handed to every waiter
                if tap:
                    tap.finish(err)
                fut.set_exception(err)
            else:
                if tap:
                    tap.finish()
                fut.set_result(desc.digest)
            finally:
                with self._lock:
                    if self._jobs.get(key) is job:
                        del self._jobs[key]

        if stopping is None:
            self._pool.submit(run)
        else:  # not waited for in a pool thread: the pool may be full of such waits
            def submit(_: Future) -> None:
                try:
                    self._pool.submit(run)
                except RuntimeError as err:  # the fetcher closed meanwhile
                    gone = Unavailable(f"fetch blob {desc.digest}: {err}")
                    if tap:
                        tap.finish(gone)
                    fut.set_exception(gone)
                    with self._lock:
                        if self._jobs.get(key) is job:
                            del self._jobs[key]
            stopping.add_done_callback(submit)
        return fut, job, True

    def _record_after(self, job: _Job, ns: str, desc: Descriptor, lease: str | None) -> Future:
        """A future for a download another namespace started: done once the blob is
        also recorded in ns (opening a writer for a present digest records it)."""
        out: Future = Future()

        def done(f: Future) -> None:
            err = f.exception()
            if err is not None:
                out.set_exception(err)
                return
            try:
                w = self.content.writer(ns, f"fetch-{desc.digest}", desc.digest, desc.size,
                                        lease)
            except AlreadyExists:
                out.set_result(desc.digest)
            except BaseException as exc:  # noqa: BLE001 (handed to the waiter)
                out.set_exception(exc)
            else:
                w.close()
                out.set_exception(Unavailable(f"fetch blob {desc.digest}: gone from the "
                                              "store right after its download"))
        job.future.add_done_callback(done)
        return out

    def release(self, job: _Job) -> None:
        """A pull no longer wants the download; the last one out cancels it."""
        with self._lock:
            job.waiters -= 1
            if job.waiters <= 0:
                job.cancel.set()

    def _download(self, ns: str, endpoint: Endpoint, repo: str, desc: Descriptor,
                  lease: str | None, progress: ProgressFn, tap: Tap | None, job: _Job,
                  labels: dict[str, str] | None) -> None:
        sid = short_id(desc.digest)
        ref = f"fetch-{desc.digest}"
        for wait in range(50):
            try:
                writer = self.content.writer(ns, ref, desc.digest, desc.size, lease)
                break
            except AlreadyExists:
                if tap:
                    tap.detach()
                progress(Progress(sid, DOWNLOADED, desc.size, desc.size))
                return
            except Unavailable:  # another process or pull is writing it: wait for it
                time.sleep(min(0.05 * (wait + 1), 1))
        else:
            raise Unavailable(f"fetch blob {desc.digest}: its ingest stays locked")
        with writer:
            if writer.offset > desc.size:
                writer.truncate(0)
            if writer.offset and tap:
                tap.detach()  # the resumed prefix never went through the tap
            attempt = 0
            last_report = 0.0
            while writer.offset < desc.size:
                attempt += 1
                start = writer.offset
                try:
                    with endpoint.open_blob(repo, desc.digest, writer.offset) as chunks:
                        for chunk in chunks:
                            if job.cancel.is_set():
                                raise Cancelled(f"fetch blob {desc.digest}: cancelled")
                            if writer.offset + len(chunk) > desc.size:
                                writer.abort()
                                raise LayerError(f"blob {desc.digest}: registry sent more than "
                                                 f"the {desc.size} bytes the manifest says")
                            writer.write(chunk)
                            if tap:
                                tap.put(chunk)
                            now = time.monotonic()
                            if now - last_report > 0.1:
                                last_report = now
                                progress(Progress(sid, DOWNLOADING, writer.offset, desc.size))
                    if writer.offset >= desc.size:
                        break
                    raise Unavailable(f"fetch blob {desc.digest}: stream ended at "
                                      f"{writer.offset} of {desc.size} bytes")
                except (Unavailable, httpx.HTTPError) as err:
                    progressed = writer.offset > start
                    if attempt >= self.retries and not progressed:
                        raise Unavailable(f"fetch blob {desc.digest}: {err}") from err
                    if progressed:
                        attempt = 1  # a stream that moved forward earns fresh retries
                    log.info("resuming download digest=%s offset=%d err=%s", desc.digest,
                             writer.offset, err)
                    time.sleep(0.2 * attempt)
            progress(Progress(sid, DOWNLOADING, writer.offset, desc.size))
            progress(Progress(sid, VERIFYING, desc.size, desc.size))
            try:
                writer.commit(desc.size, desc.digest, labels)
            except AlreadyExists:
                pass
            except InvalidArgument as err:
                writer.abort()
                raise LayerError(f"blob {desc.digest}: content does not match its digest "
                                 f"(the registry sent corrupt data): {err}") from err
        progress(Progress(sid, DOWNLOADED, desc.size, desc.size))
