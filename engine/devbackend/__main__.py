"""``python -m engine.devbackend``: run the reference backend in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from pathlib import Path

from engine.devbackend.app import serve


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m engine.devbackend", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--db", type=Path, default=Path("devbackend.sqlite3"))
    parser.add_argument("--seed", type=Path, default=None, help="directory of assistant YAML")
    parser.add_argument("--api-key", default=None, help="require this bearer token")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, args.db, args.seed, args.api_key))


if __name__ == "__main__":
    main()
