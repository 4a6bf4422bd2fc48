"""``genserve``: the service's API from the command line, and ``genserve serve`` to run it.

Exit status: 0 done; 1 ``health`` answered but the service is not ready (or an unexpected
error); 2 a usage error, or an input or output file that cannot be used; 3 the service refused
the request (an API error, printed as ``genserve: code: message``); 4 the service could not be
reached or did not answer in time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from genserve.client import DEFAULT_TIMEOUT, Client
from genserve.errors import ConnectionFailed, GenserveError
from genserve.results import Health, ImageResult, ModelInfo

EXIT_OK = 0
EXIT_NOT_READY = 1
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_UNREACHABLE = 4

SPINNER = "|/-\\"

Command = Callable[[Client, argparse.Namespace], Iterator[Any]]
"""A command: it yields its result, then the lines that say it (printed unless ``--json``)."""


@contextmanager
def progress(label: str, stream: IO[str] | None = None, delay: float = 0.3) -> Iterator[None]:
    """A spinner with the seconds waited, on ``stream`` (stderr) while the block runs, if it
    is a terminal and the block lasts longer than ``delay``; the line is cleared after."""
    stream = stream or sys.stderr
    if not stream.isatty():
        yield
        return
    done = threading.Event()
    started = time.monotonic()

    def spin() -> None:
        if done.wait(delay):
            return
        frame = 0
        while not done.is_set():
            elapsed = time.monotonic() - started
            stream.write(f"\r\x1b[K{SPINNER[frame % len(SPINNER)]} {label} {elapsed:.1f} s")
            stream.flush()
            frame += 1
            done.wait(0.1)
        stream.write("\r\x1b[K")
        stream.flush()

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        yield
    finally:
        done.set()
        spinner.join()


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _numbers(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


def _label(text: str | None) -> str | int | None:
    """A class given on the command line: an index if it is a number, else a name."""
    return int(text) if text is not None and text.isdigit() else text


def _labels(texts: list[str] | None) -> str | int | list[str | int] | None:
    """``--label`` once (every image's class) or once per image."""
    if not texts:
        return None
    labels: list[str | int] = [int(t) if t.isdigit() else t for t in texts]
    return labels if len(labels) > 1 else labels[0]


# ---------------------------------------------------------------- commands


def _models(client: Client, args: argparse.Namespace) -> Iterator[Any]:
    found = client.models()
    yield found
    rows = [["NAME", "STATE", "FAMILY", "VERSION", "PROVIDER", "OPERATIONS"]]
    for m in found:
        operations = ",".join(m.operations)
        rows.append(
            [m.name, m.state, m.family or "", _text(m.version), m.provider or "", operations]
        )
    yield from _table(rows)


def _model(client: Client, args: argparse.Namespace) -> Iterator[Any]:
    m: ModelInfo = client.model(args.name)
    yield m
    fields: list[tuple[str, Any]] = [
        ("name", m.name),
        ("state", m.state + (f" ({m.reason})" if m.reason else "")),
        ("family", m.family),
        ("version", m.version),
        ("dataset", m.dataset),
        ("operations", ", ".join(m.operations)),
        ("image shape", "x".join(map(str, m.image_shape)) if m.image_shape else None),
        ("latent dim", m.latent_dim),
        ("conditional", "yes" if m.conditional else "no"),
        ("classes", ", ".join(m.class_names) if m.class_names else None),
        ("provider", m.provider),
        ("graphs", ", ".join(f"{role}: {p}" for role, p in m.providers.items()) or None),
        ("metrics", ", ".join(f"{k} {v:.4g}" for k, v in m.metrics.items() if v is not None)),
    ]
    if m.sampling is not None:
        speed = m.sampling.seconds_per_image
        timing = "not run yet" if speed is None else f"{speed:.3g} s per image"
        fields.append(("sampling", f"{m.sampling.method}, {timing}"))
    yield from (f"{key + ':':<13}{value}" for key, value in fields if value not in (None, ""))


def _health(client: Client, args: argparse.Namespace) -> Iterator[Any]:
    health: Health = client.health()
    yield health
    yield f"live:  {'yes' if health.live else 'no'}"
    yield f"ready: {'yes' if health.ready else 'no'}" + (
        f" ({health.error})" if health.error else ""
    )
    rows = [["MODEL", "STATE", "VERSION", "PROVIDER", "REASON"]]
    for name, m in health.models.items():
        rows.append([name, m.state, _text(m.version), m.provider or "", m.reason or ""])
    yield from _table(rows) if len(rows) > 1 else []


def _sample(client: Client, args: argparse.Namespace) -> Iterator[Any]:
    with progress(f"sampling {args.n} from {args.model}"):
        result = client.sample(
            args.model,
            n=args.n,
            seed=args.seed,
            temperature=args.temperature,
            truncation=args.truncation,
            label=_label(args.label),
            timeout_ms=args.deadline_ms,
        )
    yield result
    n, h, w = result.images.shape[:3]  # (n, H, W), or (n, H, W, 3) in colour
    yield f"{result.model} v{result.version}: {n} images {w}x{h}, seed {result.seed}"
    yield from ["labels: " + ", ".join(result.labels)] if result.labels else []


def _encode(client: Client, args: argparse.Namespace) -> Iterator[Any]:
    with progress(f"encoding {len(args.images)} with {args.model}"):
        result = client.encode(
            args.model, args.images, label=_labels(args.label), timeout_ms=args.deadline_ms
        )
    yield result
    kind = "mean" if result.mean is not None else "z"
    yield f"{result.model} v{result.version}: {kind} of each image"
    for path, latent in zip(args.images, result.latents, strict=True):
        yield f"{path}: {_numbers(latent)}"


def _reconstruct(client: Client, args: argparse.Namespace) -> Iterator[Any]:
    with progress(f"reconstructing {len(args.images)} with {args.model}"):
        result = client.reconstruct(
            args.model, args.images, label=_labels(args.label), timeout_ms=args.deadline_ms
        )
    yield result
    yield f"{result.model} v{result.version}: mean squared error of each reconstruction"
    for path, error in zip(args.images, result.error, strict=True):
        yield f"{path}: {error:.5f}"


def _interpolate(client: Client, args: argparse.Namespace) -> Iterator[Any]:
    start = args.start_image if args.start_image is not None else args.start_seed
    end = args.end_image if args.end_image is not None else args.end_seed
    with progress(f"interpolating with {args.model}"):
        result = client.interpolate(
            args.model,
            start,
            end,
            steps=args.steps,
            method=args.method,
            label=_label(args.label),
            timeout_ms=args.deadline_ms,
        )
    yield result
    start, end = (f"seed {x}" if isinstance(x, int) else str(x) for x in (start, end))
    yield (
        f"{result.model} v{result.version}: {len(result.images)} images from "
        f"{start} to {end} ({args.method})"
    )


def _score(client: Client, args: argparse.Namespace) -> Iterator[Any]:
    with progress(f"scoring {len(args.images)} with {args.model}"):
        result = client.score(
            args.model,
            args.images,
            k=args.k,
            seed=args.seed,
            label=_labels(args.label),
            timeout_ms=args.deadline_ms,
        )
    yield result
    how = "exact likelihood" if result.kind == "exact" else "IWAE bound"
    if result.kind == "iwae":
        how += f", k {result.k}, seed {result.seed}"
    yield f"{result.model} v{result.version}: {how}"
    rows = [["IMAGE", "BITS/DIM", "LOG-LIKELIHOOD", "PNG BITS/DIM", "ANOMALY"]]
    for i, path in enumerate(args.images):
        bpd, ll = f"{result.bits_per_dim[i]:.4f}", f"{result.log_likelihood[i]:.2f}"
        png, anomaly = f"{result.png_bits_per_dim[i]:.4f}", f"{result.anomaly_score[i]:.4f}"
        rows.append([str(path), bpd, ll, png, anomaly])
    yield from _table(rows)


def _complete(client: Client, args: argparse.Namespace) -> Iterator[Any]:
    with progress(f"completing {len(args.images)} with {args.model}"):
        result = client.complete(
            args.model,
            args.images,
            rows=args.rows,
            mask=args.mask,
            samples=args.samples,
            seed=args.seed,
            temperature=args.temperature,
            timeout_ms=args.deadline_ms,
        )
    yield result
    images, samples = result.images.shape[:2]
    seeds = ", ".join(map(str, result.seeds))
    yield f"{result.model} v{result.version}: {images} x {samples} completions, seeds {seeds}"


def _traverse(client: Client, args: argparse.Namespace) -> Iterator[Any]:
    with progress(f"traversing with {args.model}"):
        result = client.traverse(
            args.model,
            dim=args.dim,
            range=(args.range[0], args.range[1]),
            steps=args.steps,
            seed=args.seed,
            image=args.image,
            label=_label(args.label),
            timeout_ms=args.deadline_ms,
        )
    yield result
    base = f"seed {result.seed}" if result.seed is not None else str(args.image)
    label = f", class {result.label}" if result.label else ""
    yield (
        f"{result.model} v{result.version}: dim {result.dim} from {result.values[0]:g} to "
        f"{result.values[-1]:g} in {len(result.values)} steps around {base}{label}"
    )


# ---------------------------------------------------------------- arguments

TIMEOUT_HELP = f"most seconds a command may wait, retries included (default {DEFAULT_TIMEOUT})"
RETRIES_HELP = "times a refused (429, 503) or failed request is sent again (default 2)"
CONNECTION: list[tuple[str, type | None, Any, str]] = [
    ("--url", None, None, "the service (default $GENSERVE_URL, else http://127.0.0.1:8000)"),
    ("--api-key", None, None, "sent as a bearer token (default $GENSERVE_API_KEY)"),
    ("--timeout", float, DEFAULT_TIMEOUT, TIMEOUT_HELP),
    ("--retries", int, 2, RETRIES_HELP),
    ("--json", bool, False, "print the response's JSON instead of lines"),
]
"""The connection and output options: flag, type (bool: a switch), default, help."""


def _options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """The connection and output options, before the command or after it."""
    group = parser.add_argument_group("connection and output")
    for flag, kind, default, help in CONNECTION:
        how: dict[str, Any] = {"action": "store_true"} if kind is bool else {"type": kind}
        default = argparse.SUPPRESS if suppress else default
        group.add_argument(flag, default=default, help=help, **how)


def _grid_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("-o", "--output", type=Path, help=f"write {what} to this image file")
    parser.add_argument(
        "--scale",
        dest="grid_scale",
        type=int,
        default=1,
        choices=range(1, 9),
        metavar="1..8",
        help="enlarge the written image (each pixel a scale x scale square)",
    )
    parser.add_argument("--columns", type=int, help="images per row of the written image")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genserve",
        description="Call a genserve service, or run one (genserve serve).",
        epilog="Exit status: 0 done, 1 not ready (health), 2 usage error, 3 refused by the "
        "service, 4 service unreachable.",
    )
    _options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    _options(common, suppress=True)

    def command(name: str, run: Command, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, parents=[common])
        sub.set_defaults(run=run)
        return sub

    def generation(name: str, run: Command, help: str, images: bool) -> argparse.ArgumentParser:
        """A command that generates: ``--deadline-ms``, a model, and with ``images`` images."""
        sub = command(name, run, help)
        sub.add_argument(
            "--deadline-ms",
            type=int,
            metavar="MS",
            help="the service's deadline for the work: past it, it stops and refuses with "
            "deadline_exceeded (--timeout is this command's own wait)",
        )
        sub.add_argument("model")
        if images:
            sub.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
        return sub

    command("models", _models, "list the store's models")
    command("model", _model, "describe one model").add_argument("name")
    command("health", _health, "is the service live and ready (exit 1 if not ready)")

    sample = generation("sample", _sample, "draw images", images=False)
    sample.add_argument("-n", type=int, default=1, help="how many (default %(default)s)")
    sample.add_argument("--seed", type=int, help="draws the same images again (default: random)")
    sample.add_argument("--temperature", type=float, help="PixelCNN and PixelRNN")
    sample.add_argument("--truncation", type=float, help="GANs")
    sample.add_argument("--label", help="a conditional model's class, a name or an index")
    _grid_options(sample, "the grid")

    encode = generation("encode", _encode, "the latent of each image", images=True)
    encode.add_argument(
        "--label", action="append", help="a conditional model's class (once, or once per image)"
    )

    reconstruct = generation("reconstruct", _reconstruct, "encode and decode each image", True)
    reconstruct.add_argument("--label", action="append", help="a conditional model's class")
    _grid_options(reconstruct, "the reconstructions")

    interpolate = generation(
        "interpolate", _interpolate, "a path between two seeds or images", False
    )
    for which in ("start", "end"):
        ends = interpolate.add_mutually_exclusive_group(required=True)
        ends.add_argument(f"--{which}-seed", type=int, metavar="SEED")
        ends.add_argument(f"--{which}-image", type=Path, metavar="IMAGE")
    interpolate.add_argument("--steps", type=int, default=8, help="images, both ends included")
    interpolate.add_argument("--method", choices=["lerp", "slerp"], default="lerp")
    interpolate.add_argument("--label", help="a conditional model's class for the whole path")
    _grid_options(interpolate, "the strip")

    score = generation("score", _score, "the likelihood of each image", images=True)
    score.add_argument("--k", type=int, help="VAEs: importance samples per image")
    score.add_argument("--seed", type=int, help="VAEs: the importance samples' seed")
    score.add_argument("--label", action="append", help="a conditional model's class")

    complete = generation("complete", _complete, "keep part of each image and draw the rest", True)
    given = complete.add_mutually_exclusive_group(required=True)
    given.add_argument("--rows", type=int, help="keep the top ROWS rows")
    given.add_argument("--mask", type=Path, help="an image: white keeps the pixel, black draws it")
    complete.add_argument("--samples", type=int, default=1, help="completions per image")
    complete.add_argument("--seed", type=int, help="completion i uses seed + i")
    complete.add_argument("--temperature", type=float)
    _grid_options(complete, "the completions, one row per image")

    traverse = generation("traverse", _traverse, "vary one latent dimension", images=False)
    traverse.add_argument("--dim", type=int, required=True, help="the latent dimension")
    base = traverse.add_mutually_exclusive_group()
    base.add_argument("--seed", type=int, help="around this seed's latent (default: random)")
    base.add_argument("--image", type=Path, help="around this image's latent")
    traverse.add_argument(
        "--range", type=float, nargs=2, default=[-3.0, 3.0], metavar=("FROM", "TO")
    )
    traverse.add_argument("--steps", type=int, default=8)
    traverse.add_argument("--label", help="a conditional model's class")
    _grid_options(traverse, "the strip")

    serve = commands.add_parser(
        "serve",
        help="run the service, as python -m service does (serve --help for options)",
        add_help=False,
    )
    serve.add_argument("service_args", nargs=argparse.REMAINDER)
    serve.set_defaults(run=None)
    return parser


# ---------------------------------------------------------------- main


def _serve(service_args: list[str]) -> int:
    from service.__main__ import main as serve_main

    serve_main(service_args, prog="genserve serve")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # every argument after it is the service's, --help included
        return _serve(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "serve":  # after connection options, which it does not use
        return _serve(args.service_args)
    handler = logging.StreamHandler(sys.stderr)  # the client's retries, as they happen
    clear = "\r\x1b[K" if sys.stderr.isatty() else ""  # over a spinner's line
    handler.setFormatter(logging.Formatter(clear + "genserve: %(message)s"))
    logger = logging.getLogger("genserve")
    logger.addHandler(handler)
    try:
        return _call(args)
    finally:
        logger.removeHandler(handler)


def _call(args: argparse.Namespace) -> int:
    try:
        retries = args.retries
        with Client(args.url, api_key=args.api_key, timeout=args.timeout, retries=retries) as c:
            return _run(c, args)
    except ConnectionFailed as exc:
        return _fail(exc, EXIT_UNREACHABLE)
    except GenserveError as exc:
        return _fail(exc, EXIT_REFUSED)
    except BrokenPipeError:  # the reader went away (| head): nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (OSError, ValueError) as exc:  # an input or output file, a bad option value
        return _fail(exc, EXIT_USAGE)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as exc:  # a bug: still one line, never a traceback
        return _fail(f"unexpected error: {type(exc).__name__}: {exc}", EXIT_UNEXPECTED)


def _run(client: Client, args: argparse.Namespace) -> int:
    """The command: its lines, or with ``--json`` the response's JSON; its image file."""
    outcome = args.run(client, args)
    result = next(outcome)
    if args.json:
        raw = {"models": [m.raw for m in result]} if isinstance(result, list) else result.raw
        json.dump(raw, sys.stdout)
        sys.stdout.write("\n")
    else:
        for line in outcome:
            print(line)
    if isinstance(result, ImageResult) and args.output is not None:
        grid = result.grid(args.columns, args.grid_scale)
        grid.save(args.output)
        size = args.output.stat().st_size
        wrote = f"wrote {args.output} ({grid.width}x{grid.height} px, {size:,} bytes)"
        print(wrote, file=sys.stderr if args.json else sys.stdout)
    return EXIT_NOT_READY if isinstance(result, Health) and not result.ready else EXIT_OK


def _fail(error: object, status: int) -> int:
    print(f"genserve: {error}", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
