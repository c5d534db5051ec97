"""Ending a container move that did not finish: forward when the target was started and
verifies (or the source may already be gone), otherwise back, the source restored first,
then the target's leftovers (only what this move made) removed."""

from __future__ import annotations

import contextlib
import time
from dataclasses import fields
from typing import Any

import docker

from llmaos_tui.ops.journal import MoveRecord
from llmaos_tui.ops.move_model import (
    MoveError,
    MovePlan,
    MoveResult,
    ProgressFn,
    Refusal,
    _reason,
)
from llmaos_tui.ops.move_steps import StepsMixin


class RecoveryMixin(StepsMixin):
    """Takes an unfinished (or just failed) move to one of its two ends."""

    def recover(self, move_id: str, progress: ProgressFn | None = None) -> MoveResult:
        """Take an unfinished move to one of its two ends (see the module text)."""
        self._progress = progress
        self._move_id = move_id
        rec = self.journal.get(move_id)
        p = rec.plan["plan"]
        res = MoveResult(
            "", p["container"], rec.plan["source"], rec.plan["target"], move_id=move_id
        )
        if rec.unreadable is not None:
            res.outcome, res.message = "failed", rec.unreadable
            return res
        if rec.ended is not None:
            res.outcome = str((rec.outcome or {}).get("outcome", "?"))
            res.message = "already ended"
            return res
        if not self.journal.claim(move_id):
            res.outcome = "failed"
            res.message = "another console is running this move now"
            return res
        return self._resolve(rec, failure=None, result=res)

    def _plan_from(self, rec: MoveRecord) -> MovePlan:
        p = dict(rec.plan["plan"])
        p["refusals"] = [Refusal(**r) for r in p.get("refusals", [])]
        # The plan's fields as this version has them: formats 1 and 2 have them all; a field
        # added later defaults where it has a default.
        known = {f.name for f in fields(MovePlan)}
        plan = MovePlan(**{k: v for k, v in p.items() if k in known})
        commit = rec.step("commit")
        if commit is not None:
            plan.image = str(commit.data.get("image_ref", plan.image))
            plan.image_id = str(commit.result.get("image_id", plan.image_id))
        return plan

    def _resolve(self, rec: MoveRecord, *, failure: str | None, result: MoveResult) -> MoveResult:
        """Forward when the target was started and verifies (or the source may already be
        gone), else back. ``failure`` is set for a step that just failed in this process."""
        plan = self._plan_from(rec)
        if rec.started("finish"):
            return self._forward(rec, plan, result, failure)
        if failure is None and rec.started("start"):
            try:
                new_id = self._target_id(plan.container)
                if new_id is not None:
                    state = self.dst.client.api.inspect_container(new_id)["State"]
                    if not state.get("Running"):
                        self.journal.step(rec.move_id, "start", id=new_id, recovery=True)
                        self.dst.client.api.start(new_id)
                    self.journal.step(rec.move_id, "verify", id=new_id, recovery=True)
                    self._verify(new_id)
                    self.journal.done(rec.move_id, "verify")
                    rec = self.journal.get(rec.move_id)
                    result.new_id = new_id
                    return self._forward(rec, plan, result, None)
            except Exception as exc:  # noqa: BLE001 - a target that fails to verify: roll back
                failure = f"recovery: the target does not verify: {_reason(exc)}"
        return self._back(rec, plan, result, failure or self._why_unfinished(rec))

    @staticmethod
    def _why_unfinished(rec: MoveRecord) -> str:
        """Why a move found unfinished is rolled back: the reason its rollback began with
        (a step failed, and the rollback could not finish then), else the console stopped."""
        rollback = rec.step("rollback")
        if rollback is not None and rollback.data.get("reason"):
            return f"finishing the rollback begun after {rollback.data['reason']}"
        last = next((s for s in reversed(rec.steps) if s.name != "rollback"), None)
        during = f" during {last.name}" if last is not None else ""
        return f"the console stopped mid-move{during}"

    def _forward(
        self, rec: MoveRecord, plan: MovePlan, res: MoveResult, failure: str | None
    ) -> MoveResult:
        try:
            self._finish(rec, plan, res, res.timings)
        except Exception as exc:  # noqa: BLE001 - said in the result; the journal finishes it
            res.outcome = "failed"
            res.message = (
                f"{plan.container} runs on {self.dst.name}, verified; removing the "
                f"source failed ({_reason(exc)}); the journal will finish it"
            )
            return res
        if failure:
            res.message += f" (after: {failure})"
        return res

    def _back(self, rec: MoveRecord, plan: MovePlan, res: MoveResult, why: str) -> MoveResult:
        """Restore the source first (the service is what matters), then clear the target."""
        self.journal.step(rec.move_id, "rollback", reason=why)
        self._emit(rec.move_id, "rollback", "start", message=why)
        api_src = self.src.client.api
        problems: list[str] = []
        # The source, as it was.
        try:
            with contextlib.suppress(docker.errors.APIError):
                if plan.commit and rec.started("commit"):
                    api_src.remove_image(plan.image)
            if plan.was_running:
                state = api_src.inspect_container(plan.container_id)["State"]
                if not state.get("Running"):
                    api_src.start(plan.container_id)
                self._wait_running(api_src, plan.container_id)
        except Exception as exc:  # noqa: BLE001 - every problem is reported, the rest still tried
            problems.append(f"the source did not start again on {self.src.name}: {_reason(exc)}")
        # The target's leftovers: only what this move made.
        try:
            self._clear_target(rec, plan)
        except Exception as exc:  # noqa: BLE001 - every problem is reported, the rest still tried
            problems.append(
                f"the target's leftovers on {self.dst.name} are not removed yet: {_reason(exc)}"
            )
        res.outcome = "rolled_back"
        res.new_id = None
        seen = self._observe(api_src, plan.container_id)  # what is true now, not the wish
        src_ok = not any(p.startswith("the source") for p in problems)
        if plan.was_running and seen != "running" and src_ok:
            problems.insert(0, f"the source is {seen} on {self.src.name}, not running")
            src_ok = False
        res.message = f"{plan.container} stays on {self.src.name} ({seen}): {why}"
        if problems:
            res.outcome = "failed" if not src_ok else "rolled_back"
            res.message += "; " + "; ".join(problems) + " (the journal keeps the move open)"
            self._audit(
                plan,
                res,
                f"rolled back, incomplete: {why}; {'; '.join(problems)}",
                rec.move_id,
                seen=seen,
            )
            return res
        self.journal.end(rec.move_id, "rolled_back", reason=why)
        self._audit(plan, res, f"rolled back: {why}", rec.move_id, seen=seen)
        self._emit(rec.move_id, "rollback", "done")
        return res

    def _wait_running(self, api: Any, cid: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            st = api.inspect_container(cid)["State"]
            if st.get("Running") and not st.get("Restarting"):
                return
            if time.monotonic() > deadline:
                raise MoveError(f"still {st.get('Status')} (exit code {st.get('ExitCode')})")
            time.sleep(0.1)

    def _clear_target(self, rec: MoveRecord, plan: MovePlan) -> None:
        api = self.dst.client.api
        if rec.started("create"):
            ids = {str(i) for i in rec.made("id")}
            for c in api.containers(all=True, filters={"name": f"^/{plan.container}$"}):
                cid = str(c["Id"])
                # The name was free at pre-check; a container under it created since this move
                # began (its id unknown if the console died inside the create) is ours.
                if cid in ids or float(c.get("Created") or 0) >= rec.began - 2:
                    with contextlib.suppress(docker.errors.NotFound):
                        api.remove_container(cid, v=True, force=True)
        for name in rec.made("volume"):
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_volume(str(name))
        for ref in rec.made("tagged"):
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_image(str(ref), noprune=True)
        image = rec.step("image")
        if image is not None and image.data.get("load"):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                # Loaded by this move; kept if another container has started using it.
                api.remove_image(str(image.data["image_id"]))
