"""`voice-engine serve | talk | agents | dev-backend`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from engine.settings import Settings, SettingsError, client_api_key

_R = TypeVar("_R")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `voice-engine` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    result: int = args.run(args)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voice-engine", description=__doc__)
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="run the gRPC server (settings from the environment)")
    serve.add_argument("--host", help="bind address (default: ENGINE_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: ENGINE_PORT or 50051; 0 = any)")
    serve.add_argument(
        "--workers",
        type=int,
        help="engine processes sharing the port (default: ENGINE_WORKERS, else one per CPU)",
    )
    # Set by the supervisor (engine/workers.py) on the processes it starts.
    serve.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    serve.set_defaults(run=_serve)

    talk = sub.add_parser("talk", help="hold a conversation with a running engine")
    talk.add_argument("--assistant", required=True, help="assistant id")
    talk.add_argument("--target", default="127.0.0.1:50051", help="engine host:port")
    talk.add_argument(
        "--text", action="append", default=[], help="a typed turn (repeat for several)"
    )
    talk.add_argument("--wav", type=Path, help="stream this WAV file as the caller's speech")
    talk.add_argument("--realtime", action="store_true", help="pace --wav in real time")
    talk.add_argument("--out", type=Path, help="write all assistant audio to this WAV file")
    talk.add_argument(
        "--rate", type=int, default=16000, help="output sample rate (8000/16000/24000/48000)"
    )
    talk.add_argument("--interim", action="store_true", help="ask for interim transcripts")
    talk.add_argument(
        "--meta", action="append", default=[], metavar="KEY=VALUE", help="call metadata"
    )
    talk.add_argument(
        "--api-key",
        default=client_api_key(),
        help="send `authorization: Bearer KEY` (default: $VOICE_ENGINE_API_KEY)",
    )
    talk.add_argument("--tls", action="store_true", help="connect with TLS")
    talk.add_argument("--ca", type=Path, help="with --tls: trust this CA file (PEM)")
    talk.add_argument("--cert", type=Path, help="with --tls: client certificate (PEM, mTLS)")
    talk.add_argument("--key", type=Path, help="with --tls: client private key (PEM, mTLS)")
    talk.set_defaults(run=_talk)

    agents = sub.add_parser("agents", help="local assistant definitions")
    agents_sub = agents.add_subparsers(dest="agents_command", required=True)
    for name, run in (("list", _agents_list), ("validate", _agents_validate)):
        cmd = agents_sub.add_parser(name)
        cmd.add_argument("--dir", type=Path, help="default: ASSISTANT_LOCAL_CONFIG_DIR")
        cmd.set_defaults(run=run)

    dev = sub.add_parser("dev-backend", help="run the reference control-plane backend")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8080)
    dev.add_argument("--db", type=Path, default=Path("dev-backend.sqlite3"))
    dev.add_argument("--seed-dir", type=Path, help="load assistants from these YAML files")
    dev.add_argument("--api-key", help="require this bearer token")
    dev.set_defaults(run=_dev_backend)
    return parser


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        print(f"voice-engine: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _serve(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from engine.server import serve

    settings = _settings()
    if args.host:
        settings = replace(settings, host=args.host)
    if args.port is not None:
        settings = replace(settings, port=args.port)
    from engine.observability.logs import configure_logging

    workers = _worker_count(args, settings)
    if args.worker_index is None:
        # How many engine processes share this host's CPUs: a worker inherits the
        # supervisor's count, and sizes per-process thread pools (Whisper) from it.
        os.environ["ENGINE_WORKERS"] = str(workers)
        settings = replace(settings, workers=workers)
    role = "" if workers == 1 and args.worker_index is None else _role(args.worker_index)
    configure_logging(
        settings.log_level,
        settings.log_format,
        http_requests=settings.log_http_requests,
        role=role,
    )
    if args.worker_index is None and workers > 1:
        from engine.workers import Supervisor

        return _run_loop(Supervisor(settings, workers).run(), settings)
    from engine.runtime.history import SpoolError
    from engine.workers import serve_single

    ready = _ready_pipe(args.ready_fd)
    try:
        if args.worker_index is None:  # a lone engine also takes over former workers' spools
            _run_loop(serve_single(settings, ready=ready), settings)
        else:
            _run_loop(serve(settings, ready=ready), settings)
    except SpoolError as exc:
        print(
            f"voice-engine: {exc}; give each engine process its own HISTORY_SPOOL_PATH",
            file=sys.stderr,
        )
        return 2
    return 0


def _worker_count(args: argparse.Namespace, settings: Settings) -> int:
    from engine.cpus import usable_cpus

    workers: int = args.workers if args.workers is not None else settings.workers
    if workers < 0:
        print("voice-engine: --workers must be 0 (one per CPU) or more", file=sys.stderr)
        raise SystemExit(2)
    return workers or usable_cpus()


def _role(worker_index: int | None) -> str:
    return "supervisor " if worker_index is None else f"worker-{worker_index} "


def _ready_pipe(fd: int | None) -> Callable[[int], None] | None:
    """Tell the supervisor on ``fd`` that this worker listens (and on which port)."""
    if fd is None:
        return None

    def write(port: int) -> None:
        with os.fdopen(fd, "w") as pipe:
            pipe.write(f"{port}\n")

    def ready(port: int) -> None:
        # On the next loop turn: serve() installs its SIGTERM handler right after calling
        # us, and a supervisor told "ready" may send SIGTERM at once.
        asyncio.get_running_loop().call_soon(write, port)

    return ready


def _run_loop(main: Coroutine[Any, Any, _R], settings: Settings) -> _R:
    """Run ``main`` on the event loop ENGINE_EVENT_LOOP names (asyncio or uvloop)."""
    if settings.event_loop == "uvloop":
        try:
            import uvloop  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            print(
                "voice-engine: ENGINE_EVENT_LOOP=uvloop but uvloop is not installed "
                "(pip install 'voice-engine[uvloop]')",
                file=sys.stderr,
            )
            raise SystemExit(2) from None
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)
    return asyncio.run(main)


def _talk(args: argparse.Namespace) -> int:
    from engine.talk import TalkOptions, talk

    metadata = dict(item.split("=", 1) for item in args.meta if "=" in item)
    options = TalkOptions(
        target=args.target,
        assistant_id=args.assistant,
        texts=args.text,
        wav=args.wav,
        realtime=args.realtime,
        out=args.out,
        output_rate_hz=args.rate,
        interim=args.interim,
        metadata=metadata,
        api_key=args.api_key,
        tls=args.tls or args.ca is not None,
        ca=args.ca,
        client_cert=args.cert,
        client_key=args.key,
    )
    return asyncio.run(talk(options))


def _agents_dir(args: argparse.Namespace) -> Path:
    directory: Path = args.dir or _settings().assistant_local_config_dir
    return directory


def _agents_list(args: argparse.Namespace) -> int:
    from adapters.control_plane.null import LocalAssistantDirectory

    loaded, errors = LocalAssistantDirectory(_agents_dir(args)).load_all()
    for item in loaded:
        config = item.config
        print(f"{config.id}\t{config.name}\tllm={config.llm.provider} tts={config.tts.provider}")
    for error in errors:
        print(f"invalid: {error}", file=sys.stderr)
    return 1 if errors else 0


def _agents_validate(args: argparse.Namespace) -> int:
    from adapters.control_plane.null import LocalAssistantDirectory
    from adapters.providers import EmbeddedProviderFactory

    directory = _agents_dir(args)
    loaded, errors = LocalAssistantDirectory(directory).load_all()
    problems = [str(e) for e in errors]
    factory = EmbeddedProviderFactory()
    for item in loaded:
        try:
            factory.validate(item.config.llm, item.config.tts)
        except ValueError as exc:
            problems.append(f"{item.path}: {exc}")
    asyncio.run(factory.close())
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{len(loaded) + len(errors)} file(s) checked in {directory}, {len(problems)} invalid")
    return 1 if problems else 0


def _dev_backend(args: argparse.Namespace) -> int:
    try:
        from engine.devbackend.app import serve as serve_backend
    except ModuleNotFoundError as exc:  # aiohttp is an extra
        hint = "pip install 'voice-engine[refbackend]'"
        print(f"dev-backend needs the refbackend extra: {hint} ({exc})", file=sys.stderr)
        return 2

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve_backend(args.host, args.port, args.db, args.seed_dir, args.api_key))
    return 0
