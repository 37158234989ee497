"""`llm-hec-sidecar` command line: run, validate, usage, price, init, check."""

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
    from sidecar.commands import preflight

    try:  # start-up problems: one sentence and a non-zero exit, never a traceback
        cfg = _load(args.config)
        preflight.check(cfg, once=args.once)
    except ConfigError as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return 2
    from sidecar import logsetup
    from sidecar.notify import reloading
    from sidecar.pipeline import Pipeline, StageFailed, install_signal_handlers

    logsetup.configure_from(cfg, verbose=args.verbose)
    from sidecar.telemetry import format_summary

    async def main() -> int:
        try:
            pipeline = Pipeline(cfg, once=args.once)
        except (ConfigError, OSError) as exc:
            print(f"{args.config}: cannot start: {exc}", file=sys.stderr)
            return 2
        stop = asyncio.Event()
        install_signal_handlers(stop, pipeline.hurry, cfg.shutdown_timeout_secs + 30)
        loop = asyncio.get_running_loop()

        def reload_pricing() -> None:
            with reloading():
                ok = pipeline.pricing.reload()
                logging.getLogger("sidecar").info(
                    "SIGHUP: pricing overrides %s.", "reloaded" if ok else "kept (reload failed)"
                )
                logsetup.reload_level(args.config, verbose=args.verbose)

        loop.add_signal_handler(signal.SIGHUP, reload_pricing)
        try:
            telemetry = await pipeline.run(stop)
        except StageFailed as exc:
            print(f"llm-hec-sidecar: {exc}; exiting with status 1.", file=sys.stderr)
            return 1
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

    from sidecar.commands import check, init, price, replay_dead_letters, usage

    p = sub.add_parser("usage", help="normalised usage and cost of captured response bodies")
    usage.add_arguments(p)
    p.set_defaults(func=lambda a: usage.run(a, _optional_config(a)))

    p = sub.add_parser("price", help="price a usage with the pricing engine")
    price.add_arguments(p)
    p.add_argument("-c", "--config", default=None, help="config.yaml for aliases and overrides")
    p.set_defaults(func=lambda a: price.run(a, _optional_config(a)))

    from sidecar.commands import splunk

    p = sub.add_parser("splunk", help="Splunk app: package, install, verify; cost reports")
    splunk.add_arguments(p)
    p.set_defaults(func=splunk.run)
    p = sub.add_parser("init", help="write a config (and the systemd unit) for a host")
    init.add_arguments(p)
    p.set_defaults(func=init.run)

    p = sub.add_parser("check", help="live check: HEC, token, index, log access, prices")
    _config_arg(p)
    check.add_arguments(p)
    p.set_defaults(func=lambda a: check.run(a, _optional_config(a)))

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
