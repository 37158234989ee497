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


CACHE_MAX_ENTRIES = 20_000  # distinct identities kept; the cache is emptied when full
CACHE_MAX_CHARS = 256  # a longer value is hashed every time, never kept


def make_hasher(key: bytes, *, prefix: str = "") -> Callable[[str], str]:
    """`hasher(value)` -> `prefix` + the first 24 hex chars of HMAC-SHA256(key, value).

    Hashes of the values seen are kept (users, tenants and keys repeat from request to request),
    bounded in bytes: at most `CACHE_MAX_ENTRIES` values of at most `CACHE_MAX_CHARS` each."""
    cache: dict[str, str] = {}

    def hasher(value: str) -> str:
        h = cache.get(value)
        if h is None:
            digest = hmac.new(key, value.encode("utf-8", "surrogateescape"), hashlib.sha256)
            h = prefix + digest.hexdigest()[:24]
            if len(value) <= CACHE_MAX_CHARS:
                if len(cache) >= CACHE_MAX_ENTRIES:
                    cache.clear()
                cache[value] = h
        return h

    return hasher
