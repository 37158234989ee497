"""The command line of the HEC test server: `python -m sidecar.testing --port 8088 --token T`.

Runs the server in the foreground and prints each accepted event as a JSON line on stdout (or
into `--out FILE`); with `--times` each line is `{"accepted_at": epoch seconds, "event": ...}`.
The banner (with the URL, also when `--port 0` picked a free port) goes to stderr; SIGINT or
SIGTERM stops it. Options:
`--host`, `--port`, `--token` (repeat), `--ack`, `--index` (repeat), `--ack-mode`,
`--max-request-bytes`, `--unknown-path-status`, `--out`, `--times`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

from sidecar.testing.protocol import TokenSettings
from sidecar.testing.server import HecTestServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sidecar.testing",
        description="Run a protocol-faithful HEC test server; accepted events go to stdout.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8088)
    parser.add_argument("--token", action="append", required=True, help="an accepted token")
    parser.add_argument("--ack", action="store_true", help="indexer acknowledgement on")
    parser.add_argument("--index", action="append", help="allowed index (repeat); default: any")
    parser.add_argument(
        "--ack-mode", choices=["immediate", "delay", "polls", "never"], default="immediate"
    )
    parser.add_argument(
        "--max-request-bytes", type=int, default=None, help="413 above this body size"
    )
    parser.add_argument(
        "--unknown-path-status", type=int, default=404, help="404 (Splunk) or 400 (Fluent Bit)"
    )
    parser.add_argument("--out", help="write accepted events to this file instead of stdout")
    parser.add_argument(
        "--times", action="store_true", help='lines are {"accepted_at": t, "event": ...}'
    )
    args = parser.parse_args(argv)
    out = open(args.out, "w") if args.out else sys.stdout  # noqa: SIM115 (closed below)

    def show(ev: dict[str, Any]) -> None:
        line = {"accepted_at": server.accepted_at[-1], "event": ev} if args.times else ev
        out.write(json.dumps(line) + "\n")
        out.flush()

    tokens = {t: TokenSettings(use_ack=args.ack, indexes=args.index) for t in args.token}
    server = HecTestServer(
        tokens,
        host=args.host,
        port=args.port,
        on_event=show,
        ack_mode=args.ack_mode,
        max_request_bytes=args.max_request_bytes,
        unknown_path_status=args.unknown_path_status,
    )

    async def run() -> None:
        # SIGINT and SIGTERM stop it cleanly (also when started in the background, where a
        # shell leaves SIGINT ignored).
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        async with server:
            acks = "on" if args.ack else "off"
            print(
                f"HEC test server listening on {server.url}/services/collector/event "
                f"(indexer acknowledgement {acks}); press Ctrl-C to stop.",
                file=sys.stderr,
                flush=True,
            )
            await stop.wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    if out is not sys.stdout:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
