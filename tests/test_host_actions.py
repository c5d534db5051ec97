"""The host screen's process actions from the keyboard, as htop has them (F7/F8 nice, `n` a
nice value, `a` the cores, F9 a signal with its confirmation): each asks through the dialogs
it shares with the process detail screen and posts one ChangeIntent for the selected
process, which the app then carries out (tests/test_app.py and the agent's tests cover that
part). A typed value the agent would refuse is refused in the dialog: no intent.
"""

from __future__ import annotations

from llmaos_agent.protocol import Renice, SendSignal, SetAffinity
from llmaos_tui.screens.dialogs import ChoiceScreen, ConfirmScreen, PromptScreen
from llmaos_tui.screens.intents import ChangeIntent
from tests.helpers import wait_for
from tests.test_proc_tree import SIZE, TABLE, OneHost, table_of


class Acting(OneHost):
    def __init__(self) -> None:
        super().__init__(TABLE)
        self.intents: list[ChangeIntent] = []

    def on_change_intent(self, intent: ChangeIntent) -> None:
        self.intents.append(intent)


async def test_keys_post_one_intent_for_the_selected_process() -> None:
    app = Acting()
    async with app.run_test(size=SIZE) as pilot:
        table = await table_of(pilot)
        pid = table.shown_pids[table.cursor_row]
        chosen = app.host.procs[pid]

        await pilot.press("f8")  # nice +1, as htop
        await wait_for(lambda: len(app.intents) == 1, what="the renice intent")
        first = app.intents[0]
        assert (first.host, first.method, first.target) == (
            "syn",
            "proc.renice",
            f"pid {pid} ({chosen.name})",
        )
        assert isinstance(first.params, Renice) and first.params.nice == 1
        assert first.params.create_time == chosen.create_time

        await pilot.press("n")  # a nice value: 25 is refused in the dialog, 7 goes
        await wait_for(lambda: isinstance(app.screen, PromptScreen), what="the nice prompt")
        await pilot.press("end", *["backspace"] * 4, "2", "5", "enter")
        await pilot.pause()
        assert isinstance(app.screen, PromptScreen) and len(app.intents) == 1
        await pilot.press("backspace", "backspace", "7", "enter")
        await wait_for(lambda: len(app.intents) == 2, what="the typed nice")
        assert isinstance(app.intents[1].params, Renice) and app.intents[1].params.nice == 7

        await pilot.press("a")  # the cores: a core this host lacks is refused
        await wait_for(lambda: isinstance(app.screen, PromptScreen), what="the core prompt")
        await pilot.press("end", *["backspace"] * 8, "9", "enter")
        await pilot.pause()
        assert isinstance(app.screen, PromptScreen) and len(app.intents) == 2
        await pilot.press("backspace", "1", "-", "2", "enter")
        await wait_for(lambda: len(app.intents) == 3, what="the affinity")
        aff = app.intents[2].params
        assert isinstance(aff, SetAffinity) and list(aff.cores) == [1, 2]

        await pilot.press("f9")  # a signal: chosen, then confirmed
        await wait_for(lambda: isinstance(app.screen, ChoiceScreen), what="the signals")
        await pilot.press("enter")  # TERM, the first
        await wait_for(lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("escape")  # not confirmed: nothing sent
        await pilot.pause()
        assert len(app.intents) == 3
        await pilot.press("f9")
        await wait_for(lambda: isinstance(app.screen, ChoiceScreen), what="the signals")
        await pilot.press("enter")
        await wait_for(lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("y")
        await wait_for(lambda: len(app.intents) == 4, what="the signal")
        sig = app.intents[3].params
        assert isinstance(sig, SendSignal) and sig.signal == "TERM" and sig.pid == pid
