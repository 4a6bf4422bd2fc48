"""Training speed per family on this machine: images per second of the real training step, on
real Fashion-MNIST batches, by torch threads, autocast precision, memory format and
``torch.compile``.

    .venv/bin/python bench/training_speed.py                       # every family, defaults
    .venv/bin/python bench/training_speed.py --families dcgan --threads 1,2 \\
        --precision fp32,bf16 --compile no,yes --set dcgan:d_norm=spectral

Each configuration runs a few warm-up steps (compiling, when it is on), then times ``--steps``
steps; the figure is the median over ``--repeats`` repeats of (batch size x steps / seconds).
Runs one at a time: never run it beside a training run, which needs the same cores.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.data import load  # noqa: E402
from training.hardware import cpu_description  # noqa: E402
from training.models import MODEL_CLASSES  # noqa: E402
from training.trainer import build_model  # noqa: E402


def _overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``family:key=value`` settings, by family."""
    found: dict[str, dict[str, Any]] = {}
    for item in items:
        family, _, setting = item.partition(":")
        key, _, value = setting.partition("=")
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value
        found.setdefault(family, {})[key] = parsed
    return found


def images_per_second(
    family: str,
    overrides: dict[str, Any],
    threads: int,
    precision: str,
    channels_last: bool,
    compiled: bool,
    steps: int,
    repeats: int,
    images: torch.Tensor,
    labels: torch.Tensor,
) -> list[float]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(family, overrides).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if compiled:
        model.compile_for_training()
    optimizers = model.configure_optimizers()
    batch = model.config.batch_size
    rates = []
    for repeat in range(repeats + 1):  # the first is the warm-up
        started = time.perf_counter()
        for step in range(steps if repeat else 3):
            at = (step * batch) % (len(images) - batch)
            x = images[at : at + batch]
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                model.training_step(x, labels[at : at + batch], optimizers)
        if repeat:
            rates.append(batch * steps / (time.perf_counter() - started))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--families", default=",".join(f for f in MODEL_CLASSES if f != "classifier")
    )
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--precision", default="fp32,bf16")
    parser.add_argument("--channels-last", default="yes", help="yes, no, or yes,no")
    parser.add_argument("--compile", default="no", help="torch.compile: yes, no, or no,yes")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="FAMILY:KEY=VALUE")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()

    train = load("fashion-mnist", "train")
    images, labels = train.float_images()[:8192], train.labels[:8192]
    overrides = _overrides(args.set)
    layouts = [value == "yes" for value in args.channels_last.split(",")]
    compiling = [value == "yes" for value in args.compile.split(",")]
    print(f"# {cpu_description()}")
    results = []
    print("| family | settings | threads | precision | channels-last | compile | img/s (median) |")
    print("| --- | --- | ---: | --- | --- | --- | ---: |")
    for family, threads, precision, channels_last, compiled in itertools.product(
        args.families.split(","),
        [int(t) for t in args.threads.split(",")],
        args.precision.split(","),
        layouts,
        compiling,
    ):
        settings = overrides.get(family, {})
        rates = images_per_second(
            family, settings, threads, precision, channels_last, compiled, args.steps,
            args.repeats, images, labels,
        )  # fmt: skip
        median = statistics.median(rates)
        shown = ", ".join(f"{k}={v}" for k, v in settings.items()) or "defaults"
        print(
            f"| {family} | {shown} | {threads} | {precision} | {channels_last} | {compiled} "
            f"| {median:.0f} |",
            flush=True,
        )
        results.append(
            {"family": family, "settings": settings, "threads": threads,
             "precision": precision, "channels_last": channels_last, "compile": compiled,
             "images_per_second": [round(r, 1) for r in rates], "median": round(median, 1)}
        )  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
