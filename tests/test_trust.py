"""Unknown host keys in the console, against real OpenSSH sshd (testbed hosts).

The console reaches testbed hosts over SSH as it reaches any host; known_hosts is a file
of the test's own that names only some of them. What is checked is what an operator sees
and what is left behind: the trust dialog and whose key it shows, each host's status and
reason, the attempts each host's watcher made and the connections each sshd logged, and
the known_hosts file itself.

- A host asking about its key never holds up the others: a known host comes up with
  samples while the dialog waits, even when the hosts asking fill every connect slot.
- A refused key holds for the session: the host is down saying so, never asked again by
  itself however long it waits, nothing is written; R asks again, and trusting then
  writes exactly that key and brings the host up.
- A changed key is refused without a dialog, also when retried.
- Two hosts asking at once each get their own answer; a stray Enter refuses.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Static

from llmaos_tui.app import LlmaosApp
from llmaos_tui.fleet.backoff import ceiling
from llmaos_tui.fleet.inventory import HostSpec
from llmaos_tui.fleet.ssh import HostKeyQuestion, SshLink, SshOptions
from llmaos_tui.fleet.state import HostState, HostStatus
from llmaos_tui.screens.fleet import FleetScreen, HostDetail
from llmaos_tui.screens.trust import TrustScreen
from tests.helpers import wait_for
from tests.testbed import Testbed, TestHost, testbed_fixture  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration
SIZE = (140, 40)
UP_S = 90.0  # generous: a starved 2-core machine pushes the agent and starts it slowly


def known_hosts_of(tmp_path: Path, *hosts: TestHost) -> Path:
    """A known_hosts naming only ``hosts``, in the line form the console writes."""
    kh = tmp_path / "known_hosts"
    kh.write_text("".join(line_of(h) for h in hosts))
    return kh


def line_of(h: TestHost) -> str:
    return f"{h.addr} {h.host_pubkey}\n"


def console(
    tb: Testbed, known_hosts: Path, *, slots: int = 16
) -> tuple[LlmaosApp, list[HostKeyQuestion]]:
    """The console on every testbed host, its links sharing ``slots`` connect slots as the
    CLI's share theirs; and the list of questions the links put to the operator."""
    options = SshOptions(
        known_hosts=known_hosts,
        client_keys=[str(tb.client_key)],
        config=[],
        use_agent=False,
        connect_timeout=30.0,  # a starved machine's logins are slow, not refused
    )
    limiter = asyncio.Semaphore(slots)
    links = [
        SshLink(
            HostSpec(name=h.name, host=h.addr, user="root", python=sys.executable),
            options=options,
            limiter=limiter,
        )
        for h in tb.hosts
    ]
    app = LlmaosApp(links, cursor_blink=False)
    asked: list[HostKeyQuestion] = []
    for link in links:
        ask = link.ask  # the console's own dialog, set by the app
        assert ask is not None

        async def counted(
            q: HostKeyQuestion, ask: Callable[[HostKeyQuestion], object] = ask
        ) -> bool:
            asked.append(q)
            return bool(await ask(q))  # type: ignore[misc]

        link.ask = counted
    return app, asked


async def dialog(app: LlmaosApp, pilot: Pilot[None], other_than: object = None) -> TrustScreen:
    """The trust dialog on top, drawn and with its focus where it starts (on Refuse)."""

    def shown() -> bool:
        s = app.screen
        return (
            isinstance(s, TrustScreen)
            and s is not other_than
            and s.is_mounted
            and s.focused is not None
            and s.focused.id == "refuse"
        )

    await wait_for(shown, UP_S, "a trust dialog")
    await pilot.pause()
    assert isinstance(app.screen, TrustScreen)
    return app.screen


def both_before_the_operator(app: LlmaosApp) -> bool:
    """Whether the console has taken both questions: two dialogs on the stack, or (one
    dialog at a time) one on screen and one waiting behind it. Until then a key pressed
    could land on a dialog that comes up under it."""
    dialogs = sum(isinstance(s, TrustScreen) for s in app.screen_stack)
    waiting = getattr(app, "_trust_waiting", None)
    return dialogs == 2 or (dialogs == 1 and waiting is not None and len(waiting) == 2)


def up_with_samples(h: HostState) -> bool:
    return h.status is HostStatus.UP and h.sample is not None and len(h.history) > 1


def refused(h: HostState) -> bool:
    return h.status is HostStatus.DOWN and h.retry_held and "refused" in h.reason


def text_of(w: Widget) -> str:
    strips = w.render_lines(Region(0, 0, w.size.width, w.size.height))
    return " ".join("".join(seg.text for seg in strip).strip() for strip in strips)


def host_key_disconnects(h: TestHost) -> int:
    """How many of our connections sshd saw us hang up on over its host key (sshd logs the
    client's disconnect reason): each one is a time its key was put to the question."""
    log = (h.dir / "sshd.log").read_text(errors="replace")
    return sum(1 for line in log.splitlines() if "Received disconnect" in line)


async def quiet_window(app: LlmaosApp, witness: str, seconds: float) -> None:
    """Let the console run for ``seconds``, and at least as many samples of ``witness``
    (a host that is up, sampling at 1 Hz): time the console really had, however busy the
    machine, in which a host that was not held would have been tried again."""
    h = app.fleet.hosts[witness]
    start, seen = time.monotonic(), len(h.history)
    await wait_for(
        lambda: time.monotonic() - start >= seconds and len(h.history) >= seen + seconds,
        seconds * 6 + 60,
        f"{seconds} s of samples from {witness}",
    )


# ------------------------------------------------------------------ one blocks none


@pytest.mark.parametrize(
    "trust_first", [True, False], ids=["trust-then-refuse", "refuse-then-trust"]
)
async def test_a_dialog_waiting_blocks_no_other_host(
    testbed: Testbed, tmp_path: Path, trust_first: bool
) -> None:
    a, b, c = testbed.hosts
    kh = known_hosts_of(tmp_path, c)
    # Two connect slots, both taken by the hosts whose keys are in question: a host
    # waiting on the operator must not hold one, or the known host would never connect.
    app, asked = console(testbed, kh, slots=2)
    async with app.run_test(size=SIZE) as pilot:
        first = await dialog(app, pilot)
        await wait_for(lambda: len(asked) == 2, UP_S, "both unknown hosts asking")
        await wait_for(lambda: both_before_the_operator(app), UP_S, "both questions taken")
        assert {q.name for q in asked} == {a.name, b.name}
        hosts = app.fleet.hosts
        await wait_for(lambda: up_with_samples(hosts[c.name]), UP_S, "the known host up")
        # All that while, the question was on screen and unanswered.
        assert isinstance(app.screen, TrustScreen) and first.answer is None
        assert hosts[a.name].status is not HostStatus.UP
        assert hosts[b.name].status is not HostStatus.UP

        # Answer the dialog on screen, then the other: each answer is its own host's.
        answered: TrustScreen | None = None
        for answer in (True, False) if trust_first else (False, True):
            screen = await dialog(app, pilot, other_than=answered)
            answered, name = screen, screen.host_name
            asked_of = next(q for q in asked if q.name == name)
            shown = " ".join(str(w.render()) for w in screen.query(Static))
            assert asked_of.fingerprint in shown  # the dialog shows the key of the host named
            await pilot.press("t" if answer else "r")
            if answer:
                await wait_for(partial(up_with_samples, hosts[name]), UP_S, f"{name} up")
            else:
                await wait_for(partial(refused, hosts[name]), UP_S, f"{name} refused")
        trusted = next(h for h in (a, b) if up_with_samples(hosts[h.name]))
        other = b if trusted is a else a
        assert refused(hosts[other.name])
        assert kh.read_text() == line_of(c) + line_of(trusted)  # exactly its key, once
        assert not isinstance(app.screen, TrustScreen)
        assert up_with_samples(hosts[c.name])


# ------------------------------------------------------- a refusal holds for the session


@pytest.mark.parametrize("key", ["r", "escape"])
async def test_a_refused_key_holds_until_r_and_trusting_then_writes_it(
    testbed: Testbed, tmp_path: Path, key: str
) -> None:
    a, b, c = testbed.hosts
    kh = known_hosts_of(tmp_path, b, c)
    before = kh.read_text()
    app, asked = console(testbed, kh)
    async with app.run_test(size=SIZE) as pilot:
        hosts = app.fleet.hosts
        screen = await dialog(app, pilot)
        assert screen.host_name == a.name
        await pilot.press(key)
        host = hosts[a.name]
        await wait_for(lambda: refused(host), UP_S, "the host refused")
        assert "unknown host key" in host.reason and asked[0].fingerprint in host.reason
        assert "press R" in host.reason  # how to ask again
        await wait_for(lambda: up_with_samples(hosts[c.name]), UP_S, "a known host up")
        await pilot.pause(0.3)  # past the fleet view's coalescing of host updates
        fleet = app.screen
        assert isinstance(fleet, FleetScreen)
        detail = text_of(fleet.query_one(HostDetail))  # the cursor's host: the first, a
        assert (
            a.name in detail
            and "down" in detail
            and "refused" in detail
            and "not trusted" in detail
        )

        # Well past several backoff periods (1 + 2 + 4 s, the App's first three waits):
        # a host that was not held would have been tried, and asked, again by now.
        attempts = app.by_name[a.name].attempts
        disconnects = host_key_disconnects(a)
        assert disconnects >= 1  # sshd saw the refused connect: the count is a real witness
        await quiet_window(app, c.name, ceiling(1) + ceiling(2) + ceiling(3) + 1)
        assert len(asked) == 1 and app.by_name[a.name].attempts == attempts == 1
        assert host_key_disconnects(a) == disconnects
        assert not isinstance(app.screen, TrustScreen)
        assert refused(host)
        assert kh.read_text() == before  # nothing written for a refused key

        await pilot.press("R")  # the operator asks again, explicitly
        screen = await dialog(app, pilot)
        assert screen.host_name == a.name and len(asked) == 2
        assert asked[1].fingerprint == asked[0].fingerprint
        await pilot.press("t")
        await wait_for(lambda: up_with_samples(host), UP_S, "the host up once trusted")
        assert kh.read_text() == before + line_of(a)
        assert hosts[a.name].hello is not None and hosts[a.name].hello.host.hostname == a.name  # type: ignore[union-attr]


# ----------------------------------------------------------- a changed key: no dialog


async def test_a_changed_key_is_refused_without_a_dialog(testbed: Testbed, tmp_path: Path) -> None:
    a, b, c = testbed.hosts
    kh = known_hosts_of(tmp_path, a, b, c)
    before = kh.read_text()
    testbed.replace_host_key(a)  # known_hosts keeps the old one: what an attack looks like
    app, asked = console(testbed, kh)
    async with app.run_test(size=SIZE) as pilot:
        hosts = app.fleet.hosts
        host = hosts[a.name]
        watcher = app.by_name[a.name]

        def held_changed() -> bool:
            # Held for the changed key (a starved machine's first attempt may fail for
            # another reason first; that one is retried, and then this comes).
            return host.retry_held and "HOST KEY CHANGED" in host.reason

        await wait_for(held_changed, UP_S, "the host held for its changed key")
        assert host.status is HostStatus.DOWN and "attack" in host.reason
        await wait_for(lambda: up_with_samples(hosts[c.name]), UP_S, "a known host up")
        tried = watcher.attempts
        await pilot.press("R")  # retried: refused again, still without asking
        await wait_for(lambda: watcher.attempts > tried, UP_S, "the retry")
        await wait_for(held_changed, UP_S, "held again")
        assert "HOST KEY CHANGED" in host.reason
        assert asked == []
        assert not any(isinstance(s, TrustScreen) for s in app.screen_stack)
    assert kh.read_text() == before


# ------------------------------------------------------------ two hosts asking at once


async def test_two_questions_at_once_each_answer_goes_to_its_host(
    testbed: Testbed, tmp_path: Path
) -> None:
    c = testbed.hosts[2]
    kh = known_hosts_of(tmp_path, c)
    app, asked = console(testbed, kh)
    async with app.run_test(size=SIZE) as pilot:
        hosts = app.fleet.hosts
        await dialog(app, pilot)
        await wait_for(lambda: len(asked) == 2, UP_S, "both hosts asking")
        await wait_for(lambda: both_before_the_operator(app), UP_S, "both questions taken")
        screen = await dialog(app, pilot)  # whichever is on top now
        refused_name = screen.host_name
        await pilot.press("enter")  # a stray Enter: refuses that host, never trusts
        await wait_for(lambda: refused(hosts[refused_name]), UP_S, f"{refused_name} refused")
        second = await dialog(app, pilot, other_than=screen)
        trusted_name = second.host_name
        assert trusted_name != refused_name
        assert hosts[trusted_name].status is not HostStatus.UP  # still waiting on its answer
        await pilot.press("t")
        await wait_for(lambda: up_with_samples(hosts[trusted_name]), UP_S, f"{trusted_name} up")
        assert refused(hosts[refused_name])
        trusted = testbed.host(trusted_name)
        assert kh.read_text() == line_of(c) + line_of(trusted)
        assert not isinstance(app.screen, TrustScreen)


async def test_a_second_question_waits_behind_the_one_on_screen(
    testbed: Testbed, tmp_path: Path
) -> None:
    """The operator reads one host's fingerprint: another host asking meanwhile must not
    come up over it, where the key pressed for the first would answer the second."""
    c = testbed.hosts[2]
    kh = known_hosts_of(tmp_path, c)
    app, asked = console(testbed, kh)
    async with app.run_test(size=SIZE) as pilot:
        first = await dialog(app, pilot)
        await wait_for(lambda: len(asked) == 2, UP_S, "both hosts asking")
        await wait_for(lambda: both_before_the_operator(app), UP_S, "both questions taken")
        await pilot.pause(0.3)  # time for a second dialog to come up, were it to
        assert app.screen is first and first.host_name == asked[0].name
        assert sum(isinstance(s, TrustScreen) for s in app.screen_stack) == 1
        await pilot.press("t")
        second = await dialog(app, pilot, other_than=first)
        assert second.host_name == asked[1].name
        await pilot.press("r")
        hosts = app.fleet.hosts
        await wait_for(lambda: up_with_samples(hosts[asked[0].name]), UP_S, "the first up")
        await wait_for(lambda: refused(hosts[asked[1].name]), UP_S, "the second refused")
        assert kh.read_text() == line_of(c) + line_of(testbed.host(asked[0].name))


async def test_a_dialog_closed_unanswered_refuses_and_r_asks_again(
    testbed: Testbed, tmp_path: Path
) -> None:
    """The palette's Fleet pops every screen above the fleet, the trust dialog too: the
    host must end refused (and R must ask again), not wait for ever on an answer."""
    a, b, c = testbed.hosts
    kh = known_hosts_of(tmp_path, b, c)
    app, asked = console(testbed, kh)
    async with app.run_test(size=SIZE) as pilot:
        host = app.fleet.hosts[a.name]
        await dialog(app, pilot)
        app.action_fleet()  # what the palette's "Fleet" runs
        await wait_for(lambda: refused(host), 30, "the host refused, not left waiting")
        await pilot.press("R")
        screen = await dialog(app, pilot)
        assert screen.host_name == a.name and len(asked) == 2
        await pilot.press("t")
        await wait_for(lambda: up_with_samples(host), UP_S, "the host up once trusted")
    assert kh.read_text() == line_of(b) + line_of(c) + line_of(a)
