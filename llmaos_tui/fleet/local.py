"""The local link: ``llmaos-agent attach`` as a subprocess of the console.

The console starts that subprocess first thing (:meth:`LocalLink.start`), before it
imports Textual, so this machine's daemon starts and takes its first sample while the UI
loads; the link's first :meth:`~LocalLink.open` then takes the running process over
instead of starting one (docs/BENCHMARKS.md, start-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import IO, Protocol

from llmaos_agent.protocol import MAX_LINE_BYTES
from llmaos_tui.fleet.link import LineTooLong, Link, LinkDown, Transport, reap

STDERR_KEEP = 2000


def local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        return str(os.getuid()) if hasattr(os, "getuid") else "?"


def default_agent_command() -> list[str]:
    return [sys.executable, "-m", "llmaos_agent", "attach"]


class AgentProcess(Protocol):
    """What the transport uses of its child: asyncio's, or one started before the loop."""

    @property
    def stdin(self) -> asyncio.StreamWriter | None: ...
    @property
    def stdout(self) -> asyncio.StreamReader | None: ...
    @property
    def stderr(self) -> asyncio.StreamReader | None: ...
    async def wait(self) -> int: ...
    def kill(self) -> None: ...


class EarlyProcess:
    """A child started with :class:`subprocess.Popen` before any event loop ran, with
    asyncio streams over its pipes once :meth:`adopt` is awaited on the loop."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str] | None) -> None:
        self.popen = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.stdin: asyncio.StreamWriter | None = None
        self.stdout: asyncio.StreamReader | None = None
        self.stderr: asyncio.StreamReader | None = None
        self._exit: asyncio.Future[int] | None = None

    async def adopt(self) -> EarlyProcess:
        """The pipes as asyncio streams on the running loop (once)."""
        loop = asyncio.get_running_loop()
        p = self.popen
        assert p.stdin is not None and p.stdout is not None and p.stderr is not None
        self.stdout = await _reader(loop, p.stdout, MAX_LINE_BYTES + 1)
        self.stderr = await _reader(loop, p.stderr, 2**16)
        wt, wp = await loop.connect_write_pipe(
            lambda: asyncio.streams.FlowControlMixin(loop=loop), p.stdin
        )
        self.stdin = asyncio.StreamWriter(wt, wp, None, loop)
        return self

    async def wait(self) -> int:
        if self._exit is None:
            # The loop's child watcher knows only the children it started: one thread
            # waits for this one (and ends with it).
            loop = asyncio.get_running_loop()
            done: asyncio.Future[int] = loop.create_future()
            self._exit = done

            def settle(code: int) -> None:
                if not done.done():
                    done.set_result(code)

            def wait() -> None:
                code = self.popen.wait()
                with contextlib.suppress(RuntimeError):  # the loop closed first
                    loop.call_soon_threadsafe(settle, code)

            threading.Thread(target=wait, name="agent-wait", daemon=True).start()
        return await asyncio.shield(self._exit)

    def kill(self) -> None:
        self.popen.kill()

    def discard(self) -> None:
        """Never adopted (the console did not get to run): end it as a link's close would,
        stdin's end first, killed after 2 s."""
        p = self.popen
        for f in (p.stdin, p.stdout, p.stderr):
            if f is not None:
                f.close()
        try:
            p.wait(2.0)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait()


async def _reader(
    loop: asyncio.AbstractEventLoop, pipe: IO[bytes], limit: int
) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe)
    return reader


class ProcessTransport(Transport):
    def __init__(self, proc: AgentProcess) -> None:
        self.proc = proc
        self._stderr = bytearray()
        self._stderr_task = asyncio.ensure_future(self._drain_stderr())

    async def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        while True:
            chunk = await self.proc.stderr.read(4096)
            if not chunk:
                return
            self._stderr += chunk
            if len(self._stderr) > STDERR_KEEP:
                del self._stderr[: len(self._stderr) - STDERR_KEEP]

    async def readline(self) -> bytes:
        assert self.proc.stdout is not None
        try:
            return await self.proc.stdout.readline()
        except ValueError:
            raise LineTooLong(
                f"the agent sent a line over the {MAX_LINE_BYTES} byte limit"
            ) from None

    def write(self, data: bytes) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.write(data)

    async def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # attach exits on stdin EOF
        # Keep reading (and dropping) its output: asyncio pauses a pipe whose buffer is
        # full, and then never sees its end, so wait() would hang on a flooding agent.
        drain = asyncio.ensure_future(self._discard_stdout())
        try:
            await asyncio.wait_for(self.proc.wait(), 2.0)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        finally:
            # Until the pipes report their end, asyncio keeps the transport open.
            await reap(drain, self._stderr_task, timeout=1.0)

    async def _discard_stdout(self) -> None:
        assert self.proc.stdout is not None
        with contextlib.suppress(Exception):
            while await self.proc.stdout.read(65536):
                pass

    async def end_reason(self) -> str:
        try:
            code = await asyncio.wait_for(self.proc.wait(), 2.0)
        except asyncio.TimeoutError:
            return "the agent closed its output but did not exit"
        # Its last words, for the reason (a second at most); not cancelled meanwhile.
        await asyncio.wait({self._stderr_task}, timeout=1.0)
        err = self._stderr.decode(errors="replace").strip().splitlines()
        tail = f": {err[-1]}" if err else ""
        if code < 0:
            return f"the agent was killed by signal {-code}{tail}"
        return f"the agent exited with code {code}{tail}"


class LocalLink(Link):
    """This machine's agent, through ``llmaos-agent attach`` run as a child process."""

    def __init__(
        self,
        name: str = "local",
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(name)
        self.login = local_user()
        self.command = list(command) if command else default_agent_command()
        self.env = dict(env) if env is not None else None
        self._early: EarlyProcess | None = None

    @property
    def target(self) -> str:
        return "this machine"

    def _env(self) -> dict[str, str] | None:
        return {**os.environ, **self.env} if self.env is not None else None

    def start(self) -> None:
        """Start the agent now, without a loop; the first :meth:`open` takes it over. A
        command that cannot run is left to that open, which says why."""
        if self._early is None:
            with contextlib.suppress(OSError):
                self._early = EarlyProcess(self.command, self._env())

    def discard_early(self) -> None:
        """End an agent :meth:`start` began that no open took (the console did not run)."""
        early, self._early = self._early, None
        if early is not None:
            early.discard()

    async def open(self) -> Transport:
        early, self._early = self._early, None
        if early is not None:
            return ProcessTransport(await early.adopt())
        env = self._env()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=MAX_LINE_BYTES + 1,
                env=env,
            )
        except OSError as exc:
            raise LinkDown(f"cannot run {self.command[0]}: {exc.strerror or exc}") from exc
        return ProcessTransport(proc)
