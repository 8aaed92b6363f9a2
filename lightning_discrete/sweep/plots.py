"""The sweep's figure: the score over ``(tau_f, tau_b)`` as a matplotlib heatmap.

matplotlib is imported only when a figure is drawn (``pip install lightning_discrete[plots]``;
the ``sweep`` extra includes it). Figures are plain :class:`matplotlib.figure.Figure`
objects drawn on the Agg canvas: no pyplot state, no display needed.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Tuple

from .results import aggregate

__all__ = ["DIAGONAL_LABEL", "BEST_LABEL", "heatmap_figure", "require_matplotlib", "write_heatmap"]

DIAGONAL_LABEL = "tau_f = tau_b (softmax ST)"
"""Label of the red frames around the cells with ``tau_f == tau_b`` (one legend entry)."""
BEST_LABEL = "best (lowest mean)"
"""Legend label of the frame around the best cell."""


def require_matplotlib() -> None:
    """Raise an ``ImportError`` naming the install command unless matplotlib can be imported.

    Examples:
        >>> require_matplotlib()  # matplotlib is installed here: nothing happens
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "drawing the sweep heatmap needs matplotlib: `pip install lightning_discrete[plots]` "
            "(the `sweep` extra includes it)"
        ) from err


def _cells(rows: List[Dict[str, Any]]) -> Tuple[List[float], List[float], Dict[Tuple[float, float], float]]:
    """The tau_f and tau_b values of the rows and the score of each cell (min over lr of the mean over seeds)."""
    cells: Dict[Tuple[float, float], float] = {}
    for (tf, tb, _), (v, _) in aggregate(rows).items():
        cells[(tf, tb)] = min(v, cells.get((tf, tb), math.inf))
    tfs = sorted({float(r["tau_f"]) for r in rows if r["tau_f"] != ""}) or [0.0]
    tbs = sorted({float(r["tau_b"]) for r in rows if r["tau_b"] != ""}) or [0.0]
    return tfs, tbs, cells


def heatmap_figure(rows: Iterable[Dict[str, Any]], metric: str = "val/loss", title: str = "") -> Any:
    """The score of each ``(tau_f, tau_b)`` cell (min over learning rates of the mean over seeds).

    Rows of the image are ``tau_f`` (ascending downwards), columns ``tau_b``; the tick
    labels are the temperatures. Low scores are bright (reversed viridis), cells without a
    complete trial grey. Each cell is annotated with its value; the cells with
    ``tau_f == tau_b`` (softmax ST) are outlined in red (patches labelled
    :data:`DIAGONAL_LABEL`), the best cell has a dashed black frame (:data:`BEST_LABEL`).
    The colour bar is labelled with ``metric``.

    Args:
        rows: trial rows (:data:`lightning_discrete.sweep.results.COLUMNS`; ``state``,
            ``tau_f``, ``tau_b``, ``lr`` and ``value`` are read).
        metric: the metric name, for the colour bar and the default title.
        title: the title (default: ``"<metric> over (tau_f, tau_b)"``).

    Returns:
        the ``matplotlib.figure.Figure`` (one heatmap axes and one colour bar axes).

    Raises:
        ImportError: matplotlib is not installed.

    Examples:
        >>> rows = [{"state": "COMPLETE", "tau_f": tf, "tau_b": tb, "lr": "", "value": tf + 2 * tb}
        ...         for tf in (0.1, 1.0) for tb in (0.5, 1.0)]
        >>> fig = heatmap_figure(rows)
        >>> ax = fig.axes[0]
        >>> ax.get_ylabel(), [t.get_text() for t in ax.get_xticklabels()]
        ('tau_f (forward temperature)', ['0.5', '1'])
        >>> ax.images[0].get_array().shape, fig.axes[1].get_ylabel()
        ((2, 2), 'val/loss')
    """
    require_matplotlib()
    import matplotlib
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    rows = list(rows)
    tfs, tbs, cells = _cells(rows)
    grid = np.full((len(tfs), len(tbs)), np.nan)
    for (tf, tb), v in cells.items():
        grid[tfs.index(tf), tbs.index(tb)] = v

    fig = Figure(figsize=(2.6 + 0.95 * len(tbs), 1.9 + 0.6 * len(tfs)), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["viridis_r"].with_extremes(bad="lightgrey")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(tbs)), labels=[f"{v:g}" for v in tbs])
    ax.set_yticks(range(len(tfs)), labels=[f"{v:g}" for v in tfs])
    ax.set_xlabel("tau_b (backward temperature)")
    ax.set_ylabel("tau_f (forward temperature)")
    ax.set_title(title or f"{metric} over (tau_f, tau_b)", fontsize="medium")
    fig.colorbar(image, ax=ax, label=metric)

    for (tf, tb), v in cells.items():
        i, j = tfs.index(tf), tbs.index(tb)
        r, g, b, _ = image.to_rgba(v) if math.isfinite(v) else (0.83, 0.83, 0.83, 1.0)
        dark = 0.3 * r + 0.59 * g + 0.11 * b < 0.55
        ax.text(j, i, f"{v:.4g}", ha="center", va="center", fontsize="small", color="white" if dark else "black")

    handles = []
    for i, tf in enumerate(tfs):
        for j, tb in enumerate(tbs):
            if math.isclose(tf, tb):
                handles[:1] = [ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red",
                                                      linewidth=2.5, label=DIAGONAL_LABEL))]
    finite = {k: v for k, v in cells.items() if math.isfinite(v)}
    if finite:
        tf, tb = min(finite, key=finite.get)
        handles.append(ax.add_patch(Rectangle((tbs.index(tb) - 0.4, tfs.index(tf) - 0.4), 0.8, 0.8, fill=False,
                                              edgecolor="black", linewidth=1.5, linestyle="--", label=BEST_LABEL)))
    if handles:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2, fontsize="small",
                  frameon=False)
    return fig


def write_heatmap(
    rows: Iterable[Dict[str, Any]], path: str, title: str = "", metric: str = "val/loss", dpi: int = 120
) -> str:
    """Draw :func:`heatmap_figure` and save it as a PNG.

    Args:
        rows: trial rows (see :func:`heatmap_figure`).
        path: the PNG file to write.
        title: the title (default: ``"<metric> over (tau_f, tau_b)"``).
        metric: the metric name (colour bar label).
        dpi: resolution of the PNG.

    Returns:
        ``path``.

    Raises:
        ImportError: matplotlib is not installed.

    Examples:
        >>> import os, tempfile
        >>> rows = [{"state": "COMPLETE", "tau_f": 0.5, "tau_b": 0.5, "lr": "", "value": 0.3}]
        >>> path = write_heatmap(rows, os.path.join(tempfile.mkdtemp(), "heatmap.png"))
        >>> open(path, "rb").read(8) == b"\\x89PNG\\r\\n\\x1a\\n"
        True
    """
    heatmap_figure(rows, metric=metric, title=title).savefig(path, format="png", dpi=dpi)
    return path
