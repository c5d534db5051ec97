"""The imbalance factors of one host, now and as a short history: a line each, or both
on one line with ``-compact``."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widget import Widget

from llmaos_agent.metrics import beta_max
from llmaos_tui.widgets.text import fixed, sparkline


class BetaPanel(Widget):
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
            self.refresh()

    def render(self) -> Text:
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
