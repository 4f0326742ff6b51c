"""The ``casegate`` command.

Usage::

    casegate serve [--config casegate.yaml] [--host 127.0.0.1] [--port 8080] [--workers N]
    casegate config check FILE
    casegate policy check FILE [--facts f.json]
    casegate migrate [--config casegate.yaml]
    casegate lineage verify --state URL | --config FILE

Exit status: 0 success, 1 a check failed, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import secrets
import signal
import socket
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path

from gateway.settings import ConfigError, Settings, embedded_default, load_settings

__all__ = ["main", "settings_from_env"]

DEMO_ENV = "casegate-demo.env"


def _demo_credentials(workdir: Path, environ: MutableMapping[str, str]) -> Path:
    """Create (once) and load the embedded default's demo secrets."""
    path = workdir / DEMO_ENV
    if not path.exists():
        values = {
            "CASEGATE_DEMO_CLIENT_KEY": "cg-demo-client-" + secrets.token_urlsafe(24),
            "CASEGATE_DEMO_OPERATOR_TOKEN": "cg-demo-operator-" + secrets.token_urlsafe(24),
        }
        from gateway.keys import write_once

        text = "# Casegate embedded default: demo credentials (keep private)\n"
        write_once(path, text + "".join(f"{k}={v}\n" for k, v in values.items()))
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            environ[key.strip()] = value.strip()
    return path


def _default_use_cases() -> list[str]:
    from policies import default_bundle_path, load_bundle_file

    return sorted(load_bundle_file(default_bundle_path()).policy.use_cases)


def settings_from_env(environ: MutableMapping[str, str]) -> tuple[Settings, str]:
    config = environ.get("CASEGATE_CONFIG")
    if config:
        return load_settings(config), config
    workdir = Path(environ.get("CASEGATE_WORKDIR") or os.getcwd())
    _demo_credentials(workdir, environ)
    return embedded_default(workdir, _default_use_cases()), "(embedded default)"


def _validate(settings: Settings, source: str, environ: Mapping[str, str]) -> list[str]:
    """Check everything that can be checked without starting: raises ConfigError."""
    from gateway.auth import Directory
    from gateway.runtime import build_deployments, check_routes, compile_policy, read_bundle_text
    from policies import BundleError, load_bundle

    Directory.build(settings, environ, source=source)
    deployments = build_deployments(settings, environ, source=source)
    text, bundle_source = read_bundle_text(settings, source=source)
    try:
        loaded = load_bundle(text, source=bundle_source)
    except BundleError as exc:
        raise ConfigError(str(exc)) from None
    check_routes(loaded, deployments, settings, source=source)
    if settings.consent_service is not None:  # its key must be in the environment
        from gateway.consent import ConsentClient

        ConsentClient.from_settings(settings.consent_service, environ, source=source)
    compile_policy(loaded, "enforce", source=source)
    if settings.is_postgres() and settings.keys is None:
        raise ConfigError(f"{source}: keys: required with PostgreSQL state")
    if settings.keys is not None:
        from gateway.keys import load_keys

        load_keys(settings, environ, source=source)
    return [f"{route}: {len(deps)} deployment(s)" for route, deps in deployments.items()]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    environ = os.environ
    if args.config:
        environ["CASEGATE_CONFIG"] = str(Path(args.config).resolve())
    elif environ.get("CASEGATE_CONFIG"):
        environ["CASEGATE_CONFIG"] = str(Path(environ["CASEGATE_CONFIG"]).resolve())
    else:
        environ["CASEGATE_WORKDIR"] = os.getcwd()
    settings, source = settings_from_env(environ)
    _validate(settings, source, environ)
    if settings.embedded and not _is_loopback(args.host):
        raise ConfigError(
            "(embedded default): the demo configuration binds to 127.0.0.1 only; "
            "write a config file to listen elsewhere"
        )
    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    # names this replica in switch acknowledgements (every worker inherits it)
    environ.setdefault("CASEGATE_REPLICA_ID", f"{socket.gethostname()}:{args.port}")
    if settings.embedded:
        print(
            f"Casegate: embedded default (OFFLINE DEMO route 'support-default': no model is "
            f"called). Demo credentials: {Path(environ['CASEGATE_WORKDIR']) / DEMO_ENV}",
            flush=True,
        )
    print(f"Casegate listening on http://{args.host}:{args.port} ({source})", flush=True)
    from gateway.metrics import metrics_directory

    metrics_directory(environ)  # one per server: /metrics sums every worker's file in it
    import uvicorn

    from gateway.drain import grace_s

    _exit_zero_on_sigterm()
    options = dict(
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        log_level=environ.get("CASEGATE_LOG_LEVEL", "warning").lower(),
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=grace_s(environ),
    )
    if args.workers == 1:
        uvicorn.run("gateway.app:app_from_env", **options)
    else:
        from gateway.workers import serve_workers

        # each worker on a socket of its own, so a burst of connections is spread
        serve_workers(uvicorn.Config("gateway.app:app_from_env", **options))
    return 0


def _exit_zero_on_sigterm() -> None:
    """SIGTERM ends `casegate serve` with status 0.

    uvicorn handles SIGTERM itself (graceful shutdown, CASEGATE_GRACE_S) and, once
    done, re-raises it against the handler it found: the default one would kill the
    process with -15 (143), which orchestrators report as an error. Before uvicorn takes
    over, a SIGTERM stops the start-up the same way, with status 0.
    """

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)


def cmd_config_check(args: argparse.Namespace) -> int:
    settings = load_settings(args.file)
    lines = _validate(settings, args.file, os.environ)
    print(f"{args.file}: OK")
    for line in lines:
        print(f"  route {line}")
    return 0


def cmd_policy_check(args: argparse.Namespace) -> int:
    from policies import BundleError, load_bundle_file, render_check

    try:
        loaded = load_bundle_file(args.file)
    except BundleError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    facts = None
    if args.facts:
        try:
            facts = json.loads(Path(args.facts).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            print(f"{args.facts}: cannot read facts: {exc}", file=sys.stderr)
            return 2
    try:
        print(render_check(loaded, facts))
    except ValueError as exc:  # FactsError: the facts file does not fit the bundle
        print(f"{args.facts}: {exc}", file=sys.stderr)
        return 2
    return 0


def _settings_for_local(args: argparse.Namespace) -> tuple[Settings, str]:
    if getattr(args, "state", None):
        return Settings(state=args.state, base_dir=os.getcwd()), args.state
    if getattr(args, "config", None):
        return load_settings(args.config), args.config
    environ = os.environ
    if environ.get("CASEGATE_CONFIG"):
        return load_settings(environ["CASEGATE_CONFIG"]), environ["CASEGATE_CONFIG"]
    return Settings(base_dir=os.getcwd()), "(embedded default)"


def cmd_migrate(args: argparse.Namespace) -> int:
    from gateway.stores import open_store

    settings, source = _settings_for_local(args)

    async def run() -> list[int]:
        store = open_store(settings)
        await store.open()
        try:
            return await store.migrate()
        finally:
            await store.close()

    applied = asyncio.run(run())
    print(f"{source}: applied {applied}" if applied else f"{source}: schema is up to date")
    return 0


def cmd_lineage_verify(args: argparse.Namespace) -> int:
    """Chains, checkpoints and their signatures: gateway/commands/lineage.py."""
    from gateway.commands.lineage import verify_lineage_command

    return verify_lineage_command(args, _settings_for_local)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="casegate", description="A governed LLM gateway")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument(
        "--config", help="YAML config (default: $CASEGATE_CONFIG or the embedded default)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=cmd_serve)

    config = sub.add_parser("config", help="configuration").add_subparsers(
        dest="sub", required=True
    )
    check = config.add_parser("check", help="validate a config file")
    check.add_argument("file")
    check.set_defaults(func=cmd_config_check)

    policy = sub.add_parser("policy", help="policy bundles").add_subparsers(
        dest="sub", required=True
    )
    pcheck = policy.add_parser("check", help="validate a bundle and show what it decides")
    pcheck.add_argument("file")
    pcheck.add_argument("--facts", help="JSON facts to evaluate")
    pcheck.set_defaults(func=cmd_policy_check)

    migrate = sub.add_parser("migrate", help="apply database migrations (safe to run concurrently)")
    migrate.add_argument("--config")
    migrate.add_argument("--state", help="a state URL, instead of a config")
    migrate.set_defaults(func=cmd_migrate)

    lineage = sub.add_parser("lineage", help="lineage").add_subparsers(dest="sub", required=True)
    verify = lineage.add_parser("verify", help="recompute every hash chain")
    src = verify.add_mutually_exclusive_group()
    src.add_argument("--state", help="a state URL (sqlite:///… or postgresql://…)")
    src.add_argument("--config")
    src.add_argument("--export", help="a file from GET /admin/lineage/export")
    verify.set_defaults(func=cmd_lineage_verify)
    from gateway.commands.lineage import register_lineage

    register_lineage(lineage, verify)  # `lineage show`, and verify's --public-keys

    from gateway.commands import register_all

    register_all(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"casegate: configuration error:\n{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
