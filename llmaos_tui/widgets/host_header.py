"""One line about a host: name, OS, size, link status and why it is not up."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from llmaos_agent.safetext import clean
from llmaos_tui.fleet.state import HostState, HostStatus


class HostHeader(Widget):
    COMPONENT_CLASSES = {
        "hostheader--name",
        "hostheader--up",
        "hostheader--stale",
        "hostheader--down",
        "hostheader--muted",
    }
    DEFAULT_CSS = """
    HostHeader { height: 1; background: $panel; }
    HostHeader > .hostheader--name { color: $primary; text-style: bold; }
    HostHeader > .hostheader--up { color: $success; }
    HostHeader > .hostheader--stale { color: $warning; }
    HostHeader > .hostheader--down { color: $error; text-style: bold; }
    HostHeader > .hostheader--muted { color: $text-muted; }
    """

    def __init__(self, host: HostState, *, read_only: bool = False) -> None:
        super().__init__()
        self.host = host
        self.read_only = read_only
        self._key: tuple[object, ...] = ()

    def update_host(self) -> None:
        h = self.host
        key = (h.status, h.reason, h.hello)
        if key != self._key:
            self._key = key
            self.refresh()

    def render(self) -> Text:
        h = self.host
        muted = self.get_component_rich_style("hostheader--muted")
        out = Text(no_wrap=True, overflow="ellipsis")
        # Each piece cleaned: the hello's facts and the reason are the agent's text.
        out.append(f" {clean(h.name)} ", self.get_component_rich_style("hostheader--name"))
        if h.hello:
            f = h.hello.host
            facts = f"{f.hostname} · {f.os} {f.os_release} · {f.cores} cores · "
            out.append(clean(facts), muted)
            out.append(clean(f"{h.target} · agent {h.hello.agent_version} · "), muted)
        out.append(h.status.value, self.get_component_rich_style(status_class(h.status)))
        if h.reason:
            out.append(
                f": {clean(h.reason)}", self.get_component_rich_style(status_class(h.status))
            )
        if self.read_only:
            out.append("  [read-only]", muted)
        return out


def status_class(status: HostStatus) -> str:
    if status is HostStatus.UP:
        return "hostheader--up"
    if status is HostStatus.DOWN:
        return "hostheader--down"
    return "hostheader--stale"
