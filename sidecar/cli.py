"""`llm-hec-sidecar` command line: run, validate, usage, price."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from sidecar import __version__
from sidecar.errors import ConfigError

DEFAULT_CONFIG = "config.yaml"


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c",
        "--config",
        default=os.environ.get("LLM_HEC_SIDECAR_CONFIG", DEFAULT_CONFIG),
        help="path to config.yaml (default: ./config.yaml or $LLM_HEC_SIDECAR_CONFIG)",
    )


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _load(path: str):
    from sidecar import config

    return config.load(path)


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        cfg = _load(args.config)
    except ConfigError as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return 2
    n_sinks = len(cfg.sinks)
    print(f"{args.config}: OK ({len(cfg.sources)} source(s), {n_sinks} sink(s))")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    from sidecar.pipeline import Pipeline, install_signal_handlers
    from sidecar.telemetry import format_summary

    async def main() -> int:
        pipeline = Pipeline(cfg, once=args.once)
        stop = asyncio.Event()
        install_signal_handlers(stop, pipeline.hurry)
        loop = asyncio.get_running_loop()

        def reload_pricing() -> None:
            ok = pipeline.pricing.reload()
            logging.getLogger("sidecar").info(
                "SIGHUP: pricing overrides %s.", "reloaded" if ok else "kept (reload failed)"
            )

        loop.add_signal_handler(signal.SIGHUP, reload_pricing)
        telemetry = await pipeline.run(stop)
        if args.once or not args.quiet:
            print(format_summary(telemetry))
        if args.once and pipeline.undelivered:
            print(
                f"{pipeline.undelivered} event(s) could not be delivered and wait in the spool "
                f"({pipeline.spool.directory}); the next run delivers them.",
                file=sys.stderr,
            )
            return 3
        return 0

    return asyncio.run(main())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-hec-sidecar",
        description="Per-request LLM token usage and cost from proxy logs, to Splunk HEC.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="tail the logs and deliver events")
    _config_arg(p)
    p.add_argument("--once", action="store_true", help="read what is there, deliver, exit")
    p.add_argument("--quiet", action="store_true", help="no summary on exit (follow mode)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("validate", help="check a config file offline")
    _config_arg(p)
    p.set_defaults(func=cmd_validate)

    from sidecar.commands import price, replay_dead_letters, usage

    p = sub.add_parser("usage", help="normalised usage and cost of captured response bodies")
    usage.add_arguments(p)
    p.set_defaults(func=lambda a: usage.run(a, _optional_config(a)))

    p = sub.add_parser("price", help="price a usage with the pricing engine")
    price.add_arguments(p)
    p.add_argument("-c", "--config", default=None, help="config.yaml for aliases and overrides")
    p.set_defaults(func=lambda a: price.run(a, _optional_config(a)))

    p = sub.add_parser("replay-dead-letters", help="send dead-lettered events to HEC again")
    _config_arg(p)
    replay_dead_letters.add_arguments(p)
    p.set_defaults(func=lambda a: replay_dead_letters.run(a, _optional_config(a)))
    return parser


def _optional_config(args: argparse.Namespace):
    path = getattr(args, "config", None)
    if not path:
        return None
    try:
        return _load(path)
    except ConfigError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = ["main"]
