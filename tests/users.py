"""A real second local user for the hostile-user tests: made with ``useradd``, removed after.

Needs root (skips without it, fails under LLMAOS_REQUIRE_INTEGRATION=1). The user has no
home and no login shell of its own: the tests run commands as it with :func:`run_as`,
which drops to its uid and gid with no supplementary groups, as a login would.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import need


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int

    def popen(self, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        """``argv`` started as this user (its uid, gid, no other groups)."""
        return subprocess.Popen(argv, user=self.uid, group=self.gid, extra_groups=[], **kw)

    def run(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
        kw.setdefault("capture_output", True)
        kw.setdefault("timeout", 60)
        kw.setdefault("check", False)
        return subprocess.run(argv, user=self.uid, group=self.gid, extra_groups=[], **kw)  # noqa: PLW1510 - check is in kw


@pytest.fixture
def other_user() -> Iterator[User]:
    """Another local user, as on a shared GPU server: not trusted by the agent or console."""
    need(os.geteuid() == 0, "a second local user needs root (useradd)")
    need(shutil.which("useradd") is not None, "useradd is missing (apt-get install passwd)")
    name = f"llmx{os.getpid() % 100000}"
    with contextlib.suppress(KeyError):
        pwd.getpwnam(name)
        subprocess.run(["userdel", name], check=False, capture_output=True)
    subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/bin/sh", "--user-group", name],
        check=True,
        capture_output=True,
    )
    try:
        pw = pwd.getpwnam(name)
        yield User(name, pw.pw_uid, pw.pw_gid)
    finally:
        subprocess.run(["pkill", "-KILL", "-u", name], check=False, capture_output=True)
        subprocess.run(["userdel", name], check=False, capture_output=True)
