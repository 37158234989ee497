"""`llm-hec-sidecar` command line: run, validate, usage, price, init, check."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
from types import ModuleType

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


# Commands whose module is imported only when that command runs (or asks for its --help):
# some import aiohttp or splunk-sdk, which `run` does not need. name -> (module, help).
LAZY_COMMANDS = {
    "usage": ("usage", "normalised usage and cost of captured response bodies"),
    "price": ("price", "price a usage with the pricing engine"),
    "splunk": ("splunk", "Splunk app: package, install, verify; cost reports"),
    "init": ("init", "write a config (and the systemd unit) for a host"),
    "check": ("check", "live check: HEC, token, index, log access, prices"),
    "replay-dead-letters": ("replay_dead_letters", "send dead-lettered events to HEC again"),
}


def _chosen_command(argv: list[str] | None) -> str | None:
    """The sub-command named on the command line (the global options take no value)."""
    args = sys.argv[1:] if argv is None else argv
    return next((a for a in args if not a.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `command`, only that command's module is imported (the others are
    listed with their help, but their options are not defined)."""
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

    for name, (module, help_text) in LAZY_COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if command is None or command == name:
            _add_command(p, name, importlib.import_module(f"sidecar.commands.{module}"))
    return parser


def _add_command(p: argparse.ArgumentParser, name: str, mod: ModuleType) -> None:
    if name in ("check", "replay-dead-letters"):
        _config_arg(p)
    mod.add_arguments(p)
    if name == "price":
        p.add_argument("-c", "--config", default=None, help="config.yaml for aliases and overrides")
    if name in ("splunk", "init"):
        p.set_defaults(func=mod.run)
    else:
        p.set_defaults(func=lambda a: mod.run(a, _optional_config(a)))


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
    args = build_parser(_chosen_command(argv)).parse_args(argv)
    _setup_logging(args.verbose)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = ["main"]
