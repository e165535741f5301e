"""hifly-batch: YAML manifests in, finished HiFly digital-human videos out."""

from __future__ import annotations

__version__ = "0.1.0"
