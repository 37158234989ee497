"""The optional C extensions of the hot path (built by setup.py when a compiler is there).

Each has a pure-Python twin with the same results, used when the extension was not built or
when `LLM_HEC_SIDECAR_PURE=1` is set (tests and A/B benchmarks): `sidecar.parse._bodyscan`
(sidecar/parse/body.py), `sidecar.sources._splitlines` (sidecar/sources/lines.py),
`sidecar.parse._textscan` (sidecar/parse/textscan.py: the text mode's walk),
`sidecar.parse._accessscan` (sidecar/parse/access.py), `sidecar.enrich._ratelimit`
(sidecar/enrich/ratelimit.py), `sidecar.parse._tailscan` (sidecar/parse/tailscan.py: a chat
stream's usual end) and `sidecar.join._bodylines` (sidecar/join/bodylines.py, and the
line times of sidecar/join/pending.py).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

PURE = os.environ.get("LLM_HEC_SIDECAR_PURE", "") not in ("", "0")


def load(name: str) -> ModuleType | None:
    """The extension module `name`, or None (not built here, or turned off)."""
    if PURE:
        return None
    try:
        return importlib.import_module(name)
    except ImportError:  # installed without a compiler: the caller's pure path
        return None
