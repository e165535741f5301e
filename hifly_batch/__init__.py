"""hifly-batch: YAML manifests in, finished HiFly digital-human videos out.

The library's entry point is :class:`Campaign` (``hifly_batch.campaign``):
``Campaign.load(path).plan()`` and ``.run()`` do what the ``plan`` and ``run``
commands do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Campaign", "RunResult", "__version__"]

if TYPE_CHECKING:
    from hifly_batch.campaign import Campaign, RunResult


def __getattr__(name: str) -> Any:
    # Imported on first use, so `import hifly_batch` (and the CLI's start) stays light.
    if name in ("Campaign", "RunResult"):
        from hifly_batch import campaign

        return getattr(campaign, name)
    raise AttributeError(f"module 'hifly_batch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "Campaign", "RunResult"])
