"""The imbalance factors of one host, now and as a short history: a line each, or both
on one line with ``-compact``."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from llmaos_agent.metrics import beta_max
from llmaos_tui.widgets.lines import LineWidget, Segs
from llmaos_tui.widgets.text import fixed, sparkline


class BetaPanel(LineWidget):
    """Drawn line by line (:class:`~llmaos_tui.widgets.lines.LineWidget`)."""

    COMPONENT_CLASSES = {"beta--label", "beta--value", "beta--spark"}
    DEFAULT_CSS = """
    BetaPanel { height: 2; }
    BetaPanel.-compact { height: 1; }
    BetaPanel > .beta--label { color: $text-muted; }
    BetaPanel > .beta--value { color: $accent; text-style: bold; }
    BetaPanel > .beta--spark { color: $secondary; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: list[tuple[str, float | None, int, list[float]]] = []

    def update_betas(
        self,
        beta_cpu: float | None,
        cores: int,
        cpu_history: Sequence[float],
        beta_gpu: float | None,
        gpus: int,
        gpu_history: Sequence[float],
    ) -> None:
        rows = [
            ("β cpu", beta_cpu, cores, list(cpu_history)),
            ("β gpu", beta_gpu, gpus, list(gpu_history)),
        ]
        if rows != self.rows:
            self.rows = rows
            self.lines_changed()

    def frame_key(self) -> tuple[object, ...]:
        return (self.has_class("-compact"), len(self.rows))

    def draw_lines(self) -> list[Segs]:
        # The same pieces, in the same order, as render()'s Text.
        label, value, spark = "beta--label", "beta--value", "beta--spark"
        compact = self.has_class("-compact")
        part = self.size.width // 2 if compact else self.size.width
        out: list[Segs] = []
        line = self.line()
        for i, (name, b, n, hist) in enumerate(self.rows):
            if i:
                if compact:
                    line.add("  ")
                else:
                    out.append(line.done(len(out)))
                    line = self.line()
            top = beta_max(n) or 1.0
            line.add(f"{name} ", label)
            line.add(f"{fixed(b, 3):>5}", value)
            line.add(f" /{top:.2f} ", label)
            width = max(0, part - 18 - (2 if compact else 0))
            line.add(sparkline(hist if n else [], width, top), spark)
        out.append(line.done(len(out)))
        return out

    def render(self) -> Text:
        """The panel as a Rich Text (what render_line draws; for print() and tests)."""
        label = self.get_component_rich_style("beta--label")
        value = self.get_component_rich_style("beta--value")
        spark = self.get_component_rich_style("beta--spark")
        out = Text(no_wrap=True, overflow="crop")
        compact = self.has_class("-compact")
        part = self.size.width // 2 if compact else self.size.width
        for i, (name, b, n, hist) in enumerate(self.rows):
            if i:
                out.append("  " if compact else "\n")
            top = beta_max(n) or 1.0
            out.append(f"{name} ", label)
            out.append(f"{fixed(b, 3):>5}", value)
            out.append(f" /{top:.2f} ", label)
            width = max(0, part - 18 - (2 if compact else 0))
            out.append(sparkline(hist if n else [], width, top), spark)
        return out
