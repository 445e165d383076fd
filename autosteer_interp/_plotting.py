"""Shared matplotlib plumbing for the ``plot`` methods (matplotlib is the optional ``plot`` extra)."""

from pathlib import Path
from typing import Any


def new_figure(path: str | Path | None, figsize: tuple[float, float], owner: str) -> tuple[Any, Any]:
    """A figure and its axes; a file target selects the non-interactive backend unless one is already set.

    Raises:
        ImportError: If matplotlib is missing (the message names the ``plot`` extra).
    """
    try:
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(f"{owner} needs matplotlib: pip install 'autosteer-interp[plot]'") from error
    return plt.subplots(figsize=figsize)


def finish_figure(figure: Any, path: str | Path | None) -> Any:
    """Tight layout, then save to ``path`` (creating its folder) if given; returns the figure."""
    figure.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=120)
    return figure
