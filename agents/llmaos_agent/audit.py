"""The host's audit log: one JSON line per change the agent made or refused.

Appended (never rewritten) to ``audit.log`` in the state directory, flushed and
fsynced per line so a crash right after a change still has its record.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(
        self,
        *,
        action: str,
        target: str,
        before: str,
        after: str,
        result: str,
        operator: str,
        host: str,
    ) -> None:
        line = json.dumps(
            {
                "time": time.time(),
                "operator": operator,
                "host": host,
                "action": action,
                "target": target,
                "before": before,
                "after": after,
                "result": result,
            },
            ensure_ascii=False,
        )
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
