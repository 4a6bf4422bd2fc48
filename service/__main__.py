"""``python -m service --host H --port P``: serve the store named by SERVICE_MODEL_STORE, with
SERVICE_WORKERS worker processes on that port (by default one per core the process may use)."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.config import Settings


def main(argv: list[str] | None = None, prog: str = "python -m service") -> None:
    """``prog``: the command's name in its help (``genserve serve`` runs this too)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="info")
    parser.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="log every request (off by default: at thousands of requests a second the log "
        "line costs more than the model; request metrics are always at /metrics)",
    )
    args = parser.parse_args(argv)

    from service.runtime.memory import limit_malloc_arenas

    limit_malloc_arenas()  # before onnxruntime and the HTTP server start threads
    from pydantic import ValidationError

    from service.config import Settings

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["loc"]:  # a single setting; otherwise one that settings check together
                name = "SERVICE_" + "_".join(str(p) for p in error["loc"]).upper()
                message = f"{name}: {message}"
            print(f"invalid setting {message}", file=sys.stderr)
        sys.exit(2)
    workers = settings.worker_count()
    serve = serve_granian if settings.http_server == "granian" else serve_uvicorn
    if workers == 1:
        serve(args, settings, 1)
        return
    from service.runtime.rundir import RunDir

    run = RunDir.create()  # the workers' shared folder, new and empty
    os.environ.update(run.environment())
    logging.getLogger("service").info(
        "%d %s workers, sharing %s", workers, settings.http_server, run.root
    )
    try:
        serve(args, settings, workers)
    finally:
        shutil.rmtree(run.root, ignore_errors=True)


APP_FACTORY = "service.api.app:create_app"


def serve_uvicorn(args: argparse.Namespace, settings: Settings, workers: int) -> None:
    import uvicorn

    server = {
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        "access_log": args.access_log,
        "timeout_graceful_shutdown": settings.shutdown_grace_s,
    }
    if workers == 1:  # in this process
        from service.api.app import create_app

        uvicorn.run(create_app(settings), **server)
    else:  # uvicorn spawns the workers, and each imports the app: this process never does
        uvicorn.run(APP_FACTORY, factory=True, workers=workers, **server)


def serve_granian(args: argparse.Namespace, settings: Settings, workers: int) -> None:
    """Granian parses HTTP in Rust and runs the app in ``workers`` processes it starts (one
    even for a single worker), each building the app from the environment's settings."""
    from granian.constants import Interfaces
    from granian.log import LogLevels
    from granian.server import Server

    # Granian forks its workers (Python 3.11+ on Linux): imported here, once, the app's modules
    # are in each worker from the start and share their pages. After the run folder is in the
    # environment, which prometheus-client reads when it is imported.
    import service.api.app  # noqa: F401

    Server(
        APP_FACTORY,
        factory=True,
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        workers=workers,
        log_level=LogLevels(args.log_level.lower()),
        log_access=args.access_log,
        workers_kill_timeout=max(1, settings.shutdown_grace_s),
    ).serve()


if __name__ == "__main__":
    main()
