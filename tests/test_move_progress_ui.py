"""The move dialog tells the truth about a step: a failed copy is marked failed with what
it wrote, never drawn full; bytes without a known total leave the bar indeterminate."""

from __future__ import annotations

from textual.widgets import Label, ProgressBar

from llmaos_tui.fleet.replay import ReplayLink
from llmaos_tui.ops.move_model import MoveResult, Progress
from llmaos_tui.screens.move import MoveDone, MoveIntent, MoveScreen, MoveStepProgress
from tests.helpers import RECORDING, wait_for
from tests.test_snapshots import CONTAINERS, FixedApp, _fixed


class _NoMoveApp(FixedApp):
    def on_move_intent(self, intent: MoveIntent) -> None:
        self.intents.append(intent)  # the test plays the move's news itself

    intents: list[MoveIntent] = []


async def test_a_failed_copy_is_shown_failed_not_full() -> None:
    app = _NoMoveApp([ReplayLink(RECORDING, name=n) for n in ("gpu-a", "gpu-b")],
                     cursor_blink=False)  # fmt: skip
    async with app.run_test(size=(120, 40)) as pilot:
        fixed = await _fixed(pilot)
        screen = MoveScreen(fixed.fleet, "gpu-a", CONTAINERS["gpu-a"][0])
        fixed.push_screen(screen)
        await wait_for(lambda: screen.plan_for == "gpu-b", what="the pre-check")
        await pilot.press("enter")
        await wait_for(lambda: bool(screen._bars), what="the steps' bars")
        # One bar per step id, labelled with the plan's note where it has one.
        assert list(screen._bars) == ["inspect", "precheck", "image", "create", "stop", "copy",
                                      "start", "verify", "finish"]  # fmt: skip
        finish = screen._bars["finish"].parent
        assert finish is not None
        assert str(finish.query_one(Label).render()) == "finish (remove source)"
        step = next(iter(screen._bars))
        bar: ProgressBar = screen._bars[step]
        screen.post_message(MoveStepProgress(Progress("m1", step, "bytes", 5 << 20, None)))
        await pilot.pause(0.2)
        assert bar.total is None  # indeterminate: 5 MiB of an unknown total is no fraction
        screen.post_message(MoveStepProgress(Progress("m1", step, "bytes", 6 << 20, 12 << 20)))
        await pilot.pause(0.2)
        assert bar.percentage == 0.5
        screen.post_message(
            MoveStepProgress(Progress("m1", step, "failed", 7 << 20, 12 << 20, "EPIPE"))
        )
        res = MoveResult("rolled_back", "web", "gpu-a", "gpu-b", message="copy failed")
        screen.post_message(MoveDone(res, "rolled back: copy failed"))
        await pilot.pause(0.3)
        assert bar.percentage is not None and bar.percentage < 1.0
        row = bar.parent
        assert row is not None and row.has_class("failed")
        assert "failed after 7.0MB" in str(row.query_one(Label).render())
