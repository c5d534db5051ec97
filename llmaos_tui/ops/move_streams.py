"""Bytes from one engine to another, chunk by chunk, through a bounded buffer, every stream
closed however the copy ends.

A move pipes the source's ``GET /images/{ref}/get`` (``docker save``) into the target's
``POST /images/load``, and a stopped source's ``GET /containers/{id}/archive`` into the
created target's ``PUT /containers/{id}/archive``. :class:`Pipe` owns both ends:

- the source's HTTP response is read by one thread into a queue of at most ``depth``
  chunks: the console holds ``depth`` x ``chunk`` bytes at most, however slow (or stalled)
  the target is, since a full queue stops the reader, and with it the SSH window;
- what is counted as written is what the target's request has taken: a chunk counts once
  the body asks for the next one (its send returned), and the step reports "done" only
  after the target answered;
- :meth:`Pipe.close` (always called, from a ``with``) closes the source's response, which
  ends the reader even when it is blocked on the socket, and waits for the reader to end.
  An archive stream left open keeps the source's engine busy with that container, so its
  ``start`` in a rollback would wait on it (issue 15: 120 s, then the source left stopped).

The docker SDK's own ``get_archive``/``get_image`` hand back a generator that hides the
response; these are its calls with the response kept (the SDK's ``_get``, ``_put``,
``_post``, ``_url`` and ``_raise_for_status``, as its own methods use them).
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

CHUNK = 1 << 20  # 1 MiB: large enough for throughput, small enough to stay streamed
PIPE_DEPTH = 8  # chunks read ahead: at most 8 MiB held on the console
REPORT_EVERY = 0.1  # seconds between byte counts reported (a count per chunk floods a UI)

Counted = Callable[[int], None]


class StreamError(RuntimeError):
    """The source's stream or the target's answer failed; the message says which."""


class Pipe:
    """One source response, read ahead into a bounded queue; iterate :meth:`body` as the
    target request's body. ``on_written(n)`` is told the bytes written so far (at most
    every ``REPORT_EVERY`` seconds, and once at the end)."""

    def __init__(
        self,
        response: Any,
        *,
        depth: int = PIPE_DEPTH,
        chunk: int = CHUNK,
        on_written: Counted | None = None,
    ) -> None:
        self._res = response
        self._chunk = chunk
        self._q: queue.Queue[bytes | BaseException | None] = queue.Queue(depth)
        self._stop = threading.Event()
        self._on_written = on_written
        self.written = 0  # bytes the target's request has taken
        self.read = 0  # bytes read from the source
        self.eof = False  # the source's stream ended whole
        self._last_report = 0.0
        self._reader = threading.Thread(target=self._read, name="move-read-ahead", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for chunk in self._res.raw.stream(self._chunk, decode_content=False):
                if not chunk:
                    continue
                self.read += len(chunk)
                while not self._stop.is_set():
                    with contextlib.suppress(queue.Full):
                        self._q.put(chunk, timeout=0.2)
                        break
                if self._stop.is_set():
                    return
            self._put_last(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            if not self._stop.is_set():
                self._put_last(exc)

    def _put_last(self, item: BaseException | None) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(queue.Full):
                self._q.put(item, timeout=0.2)
                return

    def _report(self, *, last: bool = False) -> None:
        if self._on_written is None:
            return
        now = time.monotonic()
        if last or now - self._last_report >= REPORT_EVERY:
            self._last_report = now
            self._on_written(self.written)

    def body(self) -> Iterator[bytes]:
        """The chunks, for the target's request; a source error is raised here."""
        pending = 0
        while True:
            item = self._q.get()
            # The chunk handed out before this call has been sent: count it.
            self.written += pending
            pending = 0
            if self.written:
                self._report()
            if item is None:
                self.eof = True
                return
            if isinstance(item, BaseException):
                raise StreamError(f"reading from the source failed: {_why(item)}") from item
            pending = len(item)
            yield item

    def close(self) -> None:
        """Stop the reader and close the source's response (idempotent, any thread)."""
        self._stop.set()
        # A reader blocked in recv is not woken by a close of its socket from here; a
        # shutdown wakes it (and ends the forward's channel, so the source lets go).
        with contextlib.suppress(Exception):
            _raw_socket(self._res).shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            self._res.close()
        self._reader.join(10)
        with contextlib.suppress(queue.Empty):
            while True:
                self._q.get_nowait()  # let go of the chunks held

    def __enter__(self) -> Pipe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        self._report(last=True)


def _why(exc: BaseException) -> str:
    return str(getattr(exc, "explanation", None) or exc) or type(exc).__name__


def _raw_socket(res: Any) -> socket.socket:
    """The socket under a streamed response (as the SDK's own ``_get_raw_response_socket``
    finds it, for its Unix-socket connections)."""
    sock: socket.socket = res.raw._fp.fp.raw._sock
    return sock


def open_archive(api: Any, container: str, path: str) -> Any:
    """The source's ``GET /containers/{id}/archive?path=`` response, not yet read."""
    res = api._get(
        api._url("/containers/{0}/archive", container),
        params={"path": path},
        stream=True,
        headers={"Accept-Encoding": "identity"},
    )
    _checked(api, res)
    return res


def open_image_save(api: Any, ref: str) -> Any:
    """The source's ``GET /images/{ref}/get`` (``docker save``) response, not yet read."""
    res = api._get(api._url("/images/{0}/get", ref), stream=True)
    _checked(api, res)
    return res


def _checked(api: Any, res: Any) -> None:
    try:
        api._raise_for_status(res)
    except BaseException:
        res.close()
        raise


def put_archive(api: Any, container: str, path: str, body: Iterator[bytes]) -> None:
    """``PUT /containers/{id}/archive?path=`` with ``body``; raise unless the target took it."""
    res = api._put(api._url("/containers/{0}/archive", container), params={"path": path}, data=body)
    try:
        api._raise_for_status(res)
        if res.status_code != 200:
            raise StreamError(f"the target answered {res.status_code} to the data")
    finally:
        res.close()


def load_image(api: Any, body: Iterator[bytes]) -> None:
    """``POST /images/load`` with ``body``; raise on an error the target reports."""
    res = api._post(api._url("/images/load"), data=body, params={"quiet": True}, stream=True)
    try:
        api._raise_for_status(res)
        for msg in api._stream_helper(res, decode=True):
            if isinstance(msg, dict) and (msg.get("error") or msg.get("errorDetail")):
                detail = msg.get("error") or msg.get("errorDetail")
                raise StreamError(f"the target's image load failed: {detail}")
    finally:
        res.close()
