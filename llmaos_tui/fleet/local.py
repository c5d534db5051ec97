"""The local link: ``llmaos-agent attach`` as a subprocess of the console."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import sys
from collections.abc import Mapping, Sequence

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


class ProcessTransport(Transport):
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
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

    @property
    def target(self) -> str:
        return "this machine"

    async def open(self) -> Transport:
        env = {**os.environ, **self.env} if self.env is not None else None
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
