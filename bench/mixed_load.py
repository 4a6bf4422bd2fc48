"""Mixed traffic: interactive clients (1 image per request, concurrency 1 and 4) alone and
beside a bulk flood (64 images per request, concurrency 16), against ``python -m service`` on
127.0.0.1, with each queue policy (SERVICE_QUEUE_POLICY=classes, then arrival) in the same run
(and with --inline N, a third: classes with SERVICE_INLINE_MAX_IMAGES=N).

    .venv/bin/python bench/mixed_load.py [--rounds 3] [--seconds 10] [--out PATH]

Each round starts each service in turn and runs three loads on it, each for --seconds:
the c=1 client alone, the c=4 client alone, then the flood with both interactive clients at
once (the flood starts a second earlier). Every load is wrk (bench/wrk/fixed_count.lua, one
thread, keep-alive) capped by time. The table gives the median over the rounds of each p50,
p99 and the flood's images/s; beside it, the graph's own run of one image, timed in this
process with the service's session settings, and the c=1 p50 over it. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from loadgen import LoadResult, cpu_model, run_wrk, say
from servers import REPO, SEED, Request

from harness.live_service import serve

VARIANTS = {
    "classes": {"SERVICE_QUEUE_POLICY": "classes"},
    "arrival": {"SERVICE_QUEUE_POLICY": "arrival"},
}
"""The services compared, by their settings (--inline N adds one)."""
INLINE = "SERVICE_INLINE_MAX_IMAGES"
EVERY = 10**9
"""A request count no load reaches: the loads end at their time cap."""


def main() -> None:
    args = parse_args()
    model, path = args.model, "/sample"
    one = Request(path, {"model": model, "n": 1, "seed": SEED})
    bulk = Request(path, {"model": model, "n": 64, "seed": SEED})
    graph_ms = graph_run_ms(args.store, model)
    say(f"graph alone, 1 image, the service's session settings: p50 {graph_ms:.3f} ms")
    variants = dict(VARIANTS)
    if args.inline is not None:
        variants[f"classes, {INLINE}={args.inline}"] = {**VARIANTS["classes"], INLINE: args.inline}
    results: dict[str, list[dict[str, LoadResult]]] = {v: [] for v in variants}
    for round_ in range(args.rounds):
        for variant, settings in variants.items():
            env = {**dict(e.split("=", 1) for e in args.env), **settings}
            with serve(args.store, **env) as service:
                say(f"round {round_ + 1}, {variant}: ready in {service.ready_s:.1f} s")
                results[variant].append(measure(service.url + path, one, bulk, args.seconds))
    table = render(results, graph_ms, args)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
        say(f"wrote {args.out}")


def measure(url: str, one: Request, bulk: Request, seconds: float) -> dict[str, LoadResult]:
    """The loads on one service: c=1 alone, c=4 alone, the flood alone, then the flood with
    both interactive clients."""

    def load(request: Request, c: int, cap_s: float) -> LoadResult:
        return run_wrk(url, request, EVERY, c, cap_s, timeout_s=60)

    found = {"c1 alone": load(one, 1, seconds), "c4 alone": load(one, 4, seconds)}
    found["flood alone"] = load(bulk, 16, seconds)
    with ThreadPoolExecutor(3) as pool:
        flood = pool.submit(load, bulk, 16, seconds + 2)
        time.sleep(1.0)  # the flood fills the queues first
        c1, c4 = pool.submit(load, one, 1, seconds), pool.submit(load, one, 4, seconds)
        found |= {"c1 flood": c1.result(), "c4 flood": c4.result(), "flood": flood.result()}
    for name, r in found.items():
        say(f"  {name:<9} {r.requests:>6} req, p50 {r.p50_ms:7.2f} ms, p99 {r.p99_ms:7.2f} ms, "
            f"{r.requests_per_s:8.1f} req/s, errors {r.errors}")  # fmt: skip
    return found


def graph_run_ms(store: Path, model: str, runs: int = 2000) -> float:
    """The median of ``runs`` runs of the model's generator (or decoder) on one latent, in a
    session opened as the service opens its batched graphs (its threads and options)."""
    from profiling import p50_ms

    from modelstore.discovery import discover, read_card
    from service.config import ServiceConfig, Settings

    config = ServiceConfig.from_settings(Settings(model_store=store, device="cpu"))
    card = read_card(next(entry for entry in discover(store) if entry.name == model))
    role = "generator" if "generator" in card.graphs else "decoder"
    return p50_ms(str(store / card.graphs[role].file), config.sessions.options(), runs)


def render(
    results: dict[str, list[dict[str, LoadResult]]], graph_ms: float, args: argparse.Namespace
) -> str:
    found_loads = ("flood alone", "flood", "c1 flood", "c4 flood")

    def med(policy: str, load: str, field: str) -> float:
        return statistics.median(getattr(r[load], field) for r in results[policy])

    amx = " with AMX" if "amx_tile" in Path("/proc/cpuinfo").read_text() else ""
    lines = [
        f"Command: `{' '.join(['.venv/bin/python', *sys.argv])}`  ",
        f"Machine: {cpu_model()}{amx}, {len(os.sched_getaffinity(0))} usable cores; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; model `{args.model}`; {args.rounds} rounds of "
        f"{args.seconds:g} s per load; medians over the rounds.",
        "",
        "| service | c=1 alone p50 / p99 | c=4 alone p50 / p99 | flood alone img/s | c=1 "
        "under the flood p50 / p99 | c=4 under the flood p50 / p99 | flood img/s beside them "
        "| interactive req/s beside the flood | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for policy in results:
        cells = [
            f"{med(policy, load, 'p50_ms'):.2f} / {med(policy, load, 'p99_ms'):.2f} ms"
            for load in ("c1 alone", "c4 alone", "c1 flood", "c4 flood")
        ]
        rate = {load: med(policy, load, "requests_per_s") for load in found_loads}
        alone, beside = 64 * rate["flood alone"], 64 * rate["flood"]
        interactive = rate["c1 flood"] + rate["c4 flood"]
        errors = sum(r.errors for found in results[policy] for r in found.values())
        lines.append(
            f"| `{policy}` | {' | '.join(cells[:2])} | {alone:,.0f} | {' | '.join(cells[2:])} "
            f"| {beside:,.0f} | {interactive:,.0f} | {errors} |"
        )
    ratio = med("classes", "flood", "requests_per_s") / med("arrival", "flood", "requests_per_s")
    ratio_alone = med("classes", "flood alone", "requests_per_s") / med(
        "arrival", "flood alone", "requests_per_s"
    )
    c1 = med("classes", "c1 alone", "p50_ms")
    lines += [
        "",
        f"Flood images/s, classes / arrival: **{ratio:.2f}×** beside the interactive clients, "
        f"**{ratio_alone:.2f}×** alone. The graph alone, one image, "
        f"the service's session settings: p50 {graph_ms:.3f} ms; c=1 alone p50 (classes) / "
        f"that: **{c1 / graph_ms:.2f}×**.",
        "",
    ]
    for variant in list(results)[2:]:
        p50 = med(variant, "c1 alone", "p50_ms")
        lines[-1:-1] = [f"`{variant}`: c=1 alone p50 / the graph's: {p50 / graph_ms:.2f}×."]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dcgan-fashion")
    parser.add_argument("--store", type=Path, default=REPO / "model_store")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="per load")
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    parser.add_argument("--inline", metavar="N", help=f"a third service: classes, {INLINE}=N")
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE",
        help="a setting for both services, e.g. SERVICE_BULK_CHUNK_IMAGES=8 (repeatable)",
    )  # fmt: skip
    args = parser.parse_args()
    args.store = args.store.resolve()
    return args


if __name__ == "__main__":
    main()
