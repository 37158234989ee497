"""`llm-hec-sidecar check`: a live check of what `validate` cannot see offline.

    HEC       each endpoint's health, the token (an empty POST: HEC checks the token first),
              the index (one test event, sourcetype llm:sidecar, "kind": "check", "test": true)
    logs      every configured log path exists and is readable by this user
    pricing   every model named in the last N lines of the logs has a price

Each failure is printed with its fix; the exit code is 1 when anything failed. Run it as the
service's user and group to check their permissions, e.g.
`systemd-run --pipe -p DynamicUser=yes -p SupplementaryGroups=adm llm-hec-sidecar check -c ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import grp
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from sidecar import __version__
from sidecar import config as C
from sidecar.status import SIDECAR_SOURCETYPE, unreadable_paths

TAIL_BYTES = 8 << 20  # at most this much of each log's end is read for the model scan
# A model name in an access line, or in a body-log record (where the JSON is escaped once; a
# name cut by a record boundary lacks its escaped closing quote and is not matched).
_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,200})"|\\"model\\"\s*:\s*\\"([^"\\]{1,200})\\"')


@dataclass
class Result:
    ok: bool
    what: str
    fix: str = ""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lines", type=int, default=1000, help="log lines scanned for models")
    p.add_argument("--no-test-event", action="store_true", help="do not send the test event")
    p.add_argument(
        "--group",
        default="adm",
        help="when run as root: the log group the service reads through (the unit's "
        "SupplementaryGroups=, default adm)",
    )


def run(args: argparse.Namespace, cfg: C.Config) -> int:
    results = check_logs(cfg, group=args.group) + check_pricing(cfg, args.lines)
    results += asyncio.run(check_hec(cfg, test_event=not args.no_test_event))
    for r in results:
        print(f"{'OK  ' if r.ok else 'FAIL'} {r.what}")
        if not r.ok and r.fix:
            print(f"     fix: {r.fix}")
    failed = sum(not r.ok for r in results)
    print(f"\n{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


def _log_paths(cfg: C.Config) -> list[tuple[str, str]]:
    out = []
    for src in cfg.sources:
        for p in src.access_log.paths:
            out.append((src.name, cfg.resolve(p)))
        for p in src.body_log.paths if src.body_log else []:
            out.append((src.name, cfg.resolve(p)))
    return out


def service_can_read(path: str, gid: int | None) -> bool:
    """As root, os.access says yes to everything: judge by the mode bits what a user with no
    privilege and the supplementary group `gid` may do (read the file, search each folder)."""

    def allowed(p: str, bit: int) -> bool:  # bit: 4 = read, 1 = search
        st = os.stat(p)
        return bool(st.st_mode & bit) or (gid == st.st_gid and bool(st.st_mode & (bit << 3)))

    try:
        folders = Path(path).resolve().parents
        return allowed(path, 4) and all(allowed(str(d), 1) for d in folders)
    except OSError:
        return False


def check_logs(cfg: C.Config, *, group: str = "adm") -> list[Result]:
    results = []
    as_root = os.geteuid() == 0
    try:
        gid = grp.getgrnam(group).gr_gid if as_root else None
    except KeyError:
        gid = None
    for name, pattern in _log_paths(cfg):
        bad = unreadable_paths([pattern])
        if as_root and not bad:
            matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
            bad = [
                f"{m} is not readable by the service (group {group}, no privilege)"
                for m in matches
                if not service_can_read(m, gid)
            ]
        if not bad:
            results.append(Result(True, f"source {name}: {pattern} is readable"))
        for reason in bad:
            fix = (
                "check the path in sources, or start the proxy so that it writes the log"
                if reason.startswith("no log file")
                else "make the log group-readable (chmod 0640) by a group the service has "
                "(SupplementaryGroups= in the unit, adm by default)"
            )
            results.append(Result(False, f"source {name}: {reason}", fix))
    return results


def _tail_lines(path: str, n: int) -> list[bytes]:
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(size - TAIL_BYTES, 0))
            return fh.read().splitlines()[-n:]
    except OSError:
        return []


def models_in(lines: list[bytes]) -> set[str]:
    found: set[str] = set()
    for line in lines:
        for m in _MODEL.finditer(line):
            name = (m.group(1) or m.group(2)).decode("utf-8", "replace").strip()
            if name:
                found.add(name)
    return found


def check_pricing(cfg: C.Config, n_lines: int) -> list[Result]:
    from sidecar.enrich.pricing import PricingEngine

    models: set[str] = set()
    for _, pattern in _log_paths(cfg):
        for path in sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]:
            models |= models_in(_tail_lines(path, n_lines))
    if not models:
        return [Result(True, f"pricing: no model named in the last {n_lines} log lines")]
    engine = PricingEngine(cfg.pricing, base_dir=cfg.base_dir)
    unpriced = sorted(m for m in models if engine.resolve(None, m) is None)
    if not unpriced:
        return [Result(True, f"pricing: all {len(models)} model(s) seen are priced")]
    return [
        Result(
            False,
            f"pricing: no price for {m!r} (seen in the last {n_lines} log lines)",
            f"add pricing.aliases: {{{m}: <catalogue model>}} or a pricing.overrides entry "
            f"for model {m}",
        )
        for m in unpriced
    ]


def _test_event(index: str | None) -> bytes:
    env: dict[str, Any] = {
        "time": round(time.time(), 3),
        "host": socket.gethostname(),
        "source": "llm-hec-sidecar check",
        "sourcetype": SIDECAR_SOURCETYPE,
        "event": {
            "schema": "llm_sidecar/1",
            "kind": "check",
            "test": True,
            "version": __version__,
        },
    }
    if index:
        env["index"] = index
    return orjson.dumps(env)


async def check_hec(cfg: C.Config, *, test_event: bool = True) -> list[Result]:
    from sidecar.sinks.hec.replies import TOKEN_CODES, config_hint
    from sidecar.sinks.hec.service import ConfigFault, Delivered, HecService

    results: list[Result] = []
    for i, sink in enumerate(cfg.sinks):
        if not isinstance(sink, C.HecSink):
            continue
        key = f"sinks[{i}]"
        channel = str(uuid.uuid4())
        service = HecService(token=sink.token, timeout_secs=10.0, tls=sink.tls)
        try:
            for ep in (e.rstrip("/") for e in sink.endpoints):
                health = await service.health(ep)
                if not health.reachable:
                    results.append(
                        Result(
                            False,
                            f"HEC {ep}: unreachable ({health.detail})",
                            f"check {key}.endpoints, the network, and {key}.tls (ca_file)",
                        )
                    )
                    continue
                results.append(
                    Result(
                        health.healthy,
                        f"HEC {ep}: health {health.detail}",
                        "Splunk reports HEC unhealthy (queues full?): see its splunkd.log",
                    )
                )
                # An empty POST: HEC checks the token first, so a good token gets code 5
                # "No data" and nothing is indexed; a bad one gets code 1-4.
                probe = await service.send(ep + sink.path, b"", compressed=False, channel=channel)
                if isinstance(probe, ConfigFault):
                    what = (
                        "token rejected"
                        if probe.hec_code in TOKEN_CODES or probe.http_status in (401, 403)
                        else "refused"
                    )
                    results.append(
                        Result(
                            False,
                            f"HEC {ep}: {what} ({probe.reason})",
                            config_hint(probe, key, sink.path),
                        )
                    )
                    continue
                results.append(Result(True, f"HEC {ep}: token accepted"))
                if not test_event:
                    continue
                outcome = await service.send(
                    ep + sink.path, _test_event(sink.index), compressed=False, channel=channel
                )
                where = f"index {sink.index}" if sink.index else "the token's default index"
                if isinstance(outcome, Delivered):
                    results.append(
                        Result(True, f"HEC {ep}: test event accepted into {where} (kind=check)")
                    )
                else:
                    if isinstance(outcome, ConfigFault):
                        hint = config_hint(outcome, key, sink.path)
                    else:
                        hint = (
                            f"check {key}.index, and allow the index on the token in Splunk "
                            "(Settings > Data inputs > HTTP Event Collector > the token)"
                        )
                    results.append(
                        Result(False, f"HEC {ep}: test event refused ({outcome.reason})", hint)
                    )
        finally:
            await service.close()
    return results
