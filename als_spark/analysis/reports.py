"""The pieces every analysis report is made of: Markdown tables and PNG plots.

``compare.md``, ``converge.md``, ``metrics.md``, ``tune.png`` and the others are
built from these, so that a table or a figure looks the same in every report
and matplotlib stays an optional dependency (the ``plot`` extra): without it,
:func:`figure` returns ``None`` with one warning and the report is written
without its plot.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

__all__ = ["blocks", "figure", "fmt", "md_table", "png_bytes"]


def md_table(head: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table with ``head`` as its header row.

    >>> print(md_table(["a", "b"], [(1, 2)]), end="")
    | a | b |
    |---|---|
    | 1 | 2 |
    """
    lines = ["| " + " | ".join(map(str, head)) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def fmt(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals, ``–`` for a missing one (``None`` or NaN).

    >>> fmt(0.12345), fmt(None), fmt(float("nan"), 2)
    ('0.123', '–', '–')
    """
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def blocks(parts: Sequence[str]) -> str:
    """Markdown blocks separated by one blank line (a table or heading must not touch a paragraph).

    >>> blocks(["# title\\n", "", "text\\n\\n"])
    '# title\\n\\ntext\\n'
    """
    return "\n".join(p.strip("\n") + "\n" for p in parts if p.strip())


def figure(name: str, *, figsize: tuple[float, float]) -> Figure | None:
    """A matplotlib ``Figure`` (Agg canvas, constrained layout) for the plot ``name``.

    ``None``, with a warning naming ``name``, when matplotlib is not installed.
    No pyplot state is used, so plotting is safe in threads and notebooks.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        log.warning("matplotlib is not installed: %s is not written (pip install 'als-spark[plot]')", name)
        return None
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure, *, dpi: int = 90) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
