"""``python -m service --host H --port P``: serve the store named by SERVICE_MODEL_STORE, with
SERVICE_WORKERS worker processes on that port (by default one per core the process may use)."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys


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

    limit_malloc_arenas()  # before onnxruntime and uvicorn start threads
    import uvicorn
    from pydantic import ValidationError

    from service.config import ServiceConfig, Settings

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
    server = {
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        "access_log": args.access_log,
        "timeout_graceful_shutdown": settings.shutdown_grace_s,
    }
    workers = ServiceConfig.from_settings(settings).workers
    if workers == 1:
        from service.api.app import create_app

        uvicorn.run(create_app(settings), **server)
        return
    from service.runtime.rundir import RunDir

    run = RunDir.create()  # the workers' shared folder, new and empty
    os.environ.update(run.environment())
    logging.getLogger("service").info("%d workers, sharing %s", workers, run.root)
    try:
        uvicorn.run("service.api.app:create_app", factory=True, workers=workers, **server)
    finally:
        shutil.rmtree(run.root, ignore_errors=True)


if __name__ == "__main__":
    main()
