"""Identities: keyed HMAC hashes, so that users and API keys can be counted but not read.

The key comes from `identity.hash_key` (set it from an environment variable). When it is empty,
a random key is created once in the state directory (`hash_key`, mode 0600) so that hashes stay
stable across restarts of this host; say so in the log, since two hosts then hash differently.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from pathlib import Path

from sidecar.statefile import write_atomic

log = logging.getLogger("sidecar.identity")


def load_or_create_key(configured: str, state_dir: str) -> bytes:
    if configured:
        return configured.encode("utf-8")
    path = Path(state_dir) / "hash_key"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_hex(32).encode("ascii")
    write_atomic(path, key)
    log.warning(
        "identity.hash_key is not set: created a random key in %s. Hashes are stable on this "
        "host only; set identity.hash_key (e.g. ${SIDECAR_HASH_KEY}) to share them across hosts.",
        path,
    )
    return key


def make_hasher(key: bytes, *, prefix: str = "") -> Callable[[str], str]:
    """`hasher(value)` -> `prefix` + the first 24 hex chars of HMAC-SHA256(key, value)."""
    cache: dict[str, str] = {}

    def hasher(value: str) -> str:
        h = cache.get(value)
        if h is None:
            digest = hmac.new(key, value.encode("utf-8", "surrogateescape"), hashlib.sha256)
            h = prefix + digest.hexdigest()[:24]
            if len(cache) < 100_000:
                cache[value] = h
        return h

    return hasher
