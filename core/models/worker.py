"""Worker processes: a native crash (segfault, abort) or a runaway allocation ends one request, not the server.

`WorkerPool.call(function, *args)` runs a module-level function in one of a few long-lived child processes
(started with "spawn", so each imports `core` and its TensorFlow settings afresh) and returns its result. When
the child dies (a signal, `os.abort()`, the memory limit) or overruns its time, the caller gets a
`WorkerStoppedError`, the child is replaced, and the other children and their callers are untouched. Uploads
travel through a pipe in memory: nothing is written to disk.

Two pools serve the app: `model_pool()` (TensorFlow; models load once per child and stay resident) and
`decode_pool()` (no TensorFlow; decoding under an address-space limit, `RLIMIT_AS`). Setting
``SCANSIGHT_WORKERS=0`` runs everything in the calling process instead (CLIs and tests that need no isolation).

Test hook: with ``SCANSIGHT_TEST_ABORT_TAG=<tag>`` (or ``<pool>:<tag>``, e.g. ``model:<tag>``) in the
environment, a child that receives a request tagged `<tag>` (the app tags requests with the upload's content
hash) calls `os.abort()` before running it.
"""

from __future__ import annotations

import os
import pickle
import queue
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ScanSightError

ABORT_TAG_VARIABLE = "SCANSIGHT_TEST_ABORT_TAG"
WORKERS_VARIABLE = "SCANSIGHT_WORKERS"


class WorkerStoppedError(ScanSightError):
    """The worker process died or overran its time while handling this request; it has been restarted."""

    hint = "Try again: a fresh model process has been started. If it happens again, try another image."


class WorkerFailedError(ScanSightError):
    """The function raised an unexpected (untyped) exception in the worker."""

    hint = "Try again, or try another image; the error has been noted by type only."


#: Byte strings at least this long travel out of band (no pickled copy on either side).
OUT_OF_BAND_BYTES = 64 * 1024


class Channel:
    """Length-prefixed messages over one end of a socket pair; received straight into their final buffer."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def send_bytes(self, data) -> None:
        view = memoryview(data).cast("B")
        self.sock.sendall(struct.pack("<Q", view.nbytes))
        self.sock.sendall(view)

    def _recv_into(self, view: memoryview) -> None:
        while view.nbytes:
            count = self.sock.recv_into(view)
            if count == 0:
                raise EOFError("the other end closed the channel")
            view = view[count:]

    def recv_bytes(self) -> bytearray:
        header = bytearray(8)
        self._recv_into(memoryview(header))
        (size,) = struct.unpack("<Q", header)
        buffer = bytearray(size)
        self._recv_into(memoryview(buffer))
        return buffer

    def poll(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        return bool(ready)

    def close(self) -> None:
        self.sock.close()


def encode_object(obj: Any) -> tuple[bytes, list[pickle.PickleBuffer]]:
    """Pickle protocol 5 with out-of-band buffers (raises before anything is sent when `obj` cannot be pickled)."""
    buffers: list[pickle.PickleBuffer] = []
    return pickle.dumps(obj, protocol=5, buffer_callback=buffers.append), buffers


def send_object(channel: Channel, obj: Any, encoded: tuple[bytes, list[pickle.PickleBuffer]] | None = None) -> None:
    """NumPy arrays and large byte strings are sent from their own memory and received into one buffer each, so
    a 200 MB upload or a 256 MB image is never copied twice. `encoded`: `encode_object(obj)`, already done."""
    payload, buffers = encoded or encode_object(obj)
    channel.send_bytes(payload)
    channel.send_bytes(struct.pack("<I", len(buffers)))
    for buffer in buffers:
        channel.send_bytes(buffer.raw())


def recv_object(channel: Channel) -> Any:
    payload = channel.recv_bytes()
    (count,) = struct.unpack("<I", channel.recv_bytes())
    buffers = [channel.recv_bytes() for _ in range(count)]
    return pickle.loads(payload, buffers=buffers)


def _out_of_band(value: Any) -> Any:
    return pickle.PickleBuffer(value) if isinstance(value, bytes) and len(value) >= OUT_OF_BAND_BYTES else value


def _serve(connection, memory_limit_bytes: int | None, pool_name: str = "") -> None:
    """The child's loop: receive (function, args, kwargs, tag, abort tag); send ("ok", result) or (status, detail)."""
    if memory_limit_bytes:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    while True:
        try:
            function, args, kwargs, tag, abort_tag = recv_object(connection)
        except (EOFError, OSError, KeyboardInterrupt):
            return
        except Exception as error:  # a request that does not unpickle here (e.g. a function of a __main__)
            send_object(connection, ("failed", f"request not understood: {type(error).__name__}"))
            continue
        # Large byte strings arrive out of band as memoryviews: hand the function their bytearray (no copy).
        args = tuple(arg.obj if isinstance(arg, memoryview) and isinstance(arg.obj, bytearray) else arg for arg in args)
        if abort_tag and tag and abort_tag in (tag, f"{pool_name}:{tag}"):
            os.abort()
        try:
            reply = ("ok", function(*args, **kwargs))
        except ScanSightError as error:
            reply = ("error", error)
        except MemoryError:
            reply = ("memory", None)
        except Exception as error:  # an untyped failure: its type only (the message may quote the upload)
            reply = ("failed", type(error).__name__)
        try:
            encoded = encode_object(reply)  # pickled once; a result that cannot be pickled becomes a typed failure
        except Exception as error:
            reply = ("failed", f"unpicklable result ({type(error).__name__})")
            encoded = encode_object(reply)
        send_object(connection, reply, encoded)


REPO = Path(__file__).resolve().parents[2]


@dataclass
class _Child:
    process: subprocess.Popen
    connection: Channel
    started: float = field(default_factory=time.monotonic)


class WorkerPool:
    """`size` child processes; each request has one child to itself for its whole duration."""

    def __init__(
        self,
        name: str,
        size: int = 1,
        timeout_s: float = 300.0,
        memory_limit_bytes: int | None = None,
    ):
        self.name = name
        self.size = max(1, int(size))
        self.timeout_s = timeout_s
        self.memory_limit_bytes = memory_limit_bytes
        self.restarts = 0
        self._idle: queue.Queue[_Child] = queue.Queue()
        self._children: list[_Child] = []
        self._lock = threading.Lock()
        self._closed = False
        for _ in range(self.size):
            self._idle.put(self._start())

    def _start(self) -> _Child:
        """A fresh ``python -m core.models.worker`` child on one end of a socket pair (a new interpreter, not a fork:
        the server's threads and TensorFlow state are never copied)."""
        parent_end, child_end = socket.socketpair()
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        limit = str(self.memory_limit_bytes or 0)
        command = [sys.executable, "-m", "core.models.worker", str(child_end.fileno()), limit]
        process = subprocess.Popen(
            [*command, self.name],
            pass_fds=[child_end.fileno()],
            stdin=subprocess.DEVNULL,
            env=environment,
            cwd=REPO,
        )
        child_end.close()
        child = _Child(process, Channel(parent_end))
        with self._lock:
            self._children.append(child)
        return child

    def _replace(self, child: _Child) -> _Child:
        with self._lock:
            if child in self._children:
                self._children.remove(child)
            self.restarts += 1
        child.connection.close()
        if child.process.poll() is None:
            child.process.kill()
        child.process.wait(timeout=10)
        return self._start()

    def pids(self) -> list[int]:
        with self._lock:
            return [child.process.pid for child in self._children]

    def call(self, function: Callable[..., Any], *args: Any, tag: str = "", **kwargs: Any) -> Any:
        """Run `function(*args, **kwargs)` in a child; typed errors from it are raised here unchanged."""
        if self._closed:
            raise WorkerStoppedError("The model processes have been shut down.")
        child = self._idle.get()
        healthy = True
        try:
            try:
                abort_tag = os.environ.get(ABORT_TAG_VARIABLE, "")  # read per call: the test hook
                request = (function, tuple(_out_of_band(a) for a in args), kwargs, tag, abort_tag)
                send_object(child.connection, request)
                if not child.connection.poll(self.timeout_s):
                    healthy = False
                    raise WorkerStoppedError(
                        f"The {self.name} process took longer than {self.timeout_s:.0f} s on this image "
                        "and was stopped."
                    )
                status, value = recv_object(child.connection)
            except (EOFError, OSError, BrokenPipeError):
                healthy = False
                try:
                    code = child.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    code = None
                how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                raise WorkerStoppedError(
                    f"The {self.name} process stopped while working on this image ({how}); try again."
                ) from None
        finally:
            self._idle.put(child if healthy else self._replace(child))
        if status == "ok":
            return value
        if status == "error":
            raise value
        if status == "memory":
            raise WorkerFailedError(f"The {self.name} process ran out of its memory allowance on this image.")
        raise WorkerFailedError(f"The {self.name} process failed on this image ({value}).")

    def close(self) -> None:
        self._closed = True
        with self._lock:
            children, self._children = list(self._children), []
        for child in children:
            child.connection.close()
            child.process.kill()
            child.process.wait(timeout=10)


def in_process() -> bool:
    """True when ``SCANSIGHT_WORKERS=0``: run model calls and decoding in the calling process."""
    return os.environ.get(WORKERS_VARIABLE, "").strip() == "0"


#: Address-space limit of a decoding child: the decoded-size checks keep every file far below it.
DECODE_MEMORY_LIMIT_BYTES = 3 * 1024**3

_pools: dict[str, WorkerPool] = {}
_pools_lock = threading.Lock()


def _pool(name: str, **options: Any) -> WorkerPool:
    with _pools_lock:
        if name not in _pools:
            _pools[name] = WorkerPool(name, **options)
        return _pools[name]


def model_pool() -> WorkerPool:
    """The process-wide pool of model workers (size from ``SCANSIGHT_WORKERS``, default 1)."""
    size = int(os.environ.get(WORKERS_VARIABLE, "1") or 1)
    return _pool("model", size=max(1, size))


def decode_pool() -> WorkerPool:
    return _pool("decoder", size=1, timeout_s=60.0, memory_limit_bytes=DECODE_MEMORY_LIMIT_BYTES)


def run_model(function: Callable[..., Any], *args: Any, tag: str = "", **kwargs: Any) -> Any:
    """`function(*args)` in a model worker (or here, with ``SCANSIGHT_WORKERS=0``)."""
    if in_process():
        return function(*args, **kwargs)
    return model_pool().call(function, *args, tag=tag, **kwargs)


def run_decoder(function: Callable[..., Any], *args: Any, tag: str = "", **kwargs: Any) -> Any:
    """`function(*args)` in the memory-capped decoding worker (or here, with ``SCANSIGHT_WORKERS=0``)."""
    if in_process():
        return function(*args, **kwargs)
    return decode_pool().call(function, *args, tag=tag, **kwargs)


if __name__ == "__main__":
    # A child of `WorkerPool`: ``python -m core.models.worker FD MEMORY_LIMIT_BYTES POOL_NAME`` (not for people).
    if len(sys.argv) != 4 or not sys.argv[1].isdigit():
        raise SystemExit("core.models.worker is started by WorkerPool (core/models/worker.py), not by hand.")
    _serve(Channel(socket.socket(fileno=int(sys.argv[1]))), int(sys.argv[2]) or None, sys.argv[3])
