"""Measure recipe changes one by one on the held-out split (never the test split):

    python -m training.ablate dcgan                # every DCGAN variant below, 2 at a time
    python -m training.ablate wgan-gp --only base,ema --epochs 10
    python -m training.ablate dcgan --report       # the table of what has been measured

Each variant trains for the same number of epochs with one torch thread (``--jobs`` of them
side by side), then ``python -m training evaluate --split heldout`` measures FD, KID,
precision and recall against held-out images. Results go to
``runs/ablations/<family>/<variant>/`` (the checkpoint, the evaluation JSON and the log); a
variant already measured is not run again. The table is what docs/training.md quotes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

RUNS = Path("runs/ablations")
GAN_TTUR = {"lr": 1e-4, "lr_d": 4e-4, "beta1": 0.0, "beta2": 0.9}

DCGAN_V1 = {"batch_size": 128, "ema_batchnorm": "copy"}
"""The recipe of dcgan-fashion v1, which the DCGAN variants change one thing at a time; the
defaults are now ema-bn-deep32-b64's, the two best changes together."""

VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "dcgan": {
        "base": DCGAN_V1,
        "ema-bn": {**DCGAN_V1, "ema_batchnorm": "recompute"},
        "sn": {**DCGAN_V1, "ema_batchnorm": "recompute", "d_norm": "spectral"},
        "sn-hinge-ttur": {
            **DCGAN_V1, "ema_batchnorm": "recompute", "d_norm": "spectral", "loss": "hinge",
            **GAN_TTUR,
        },
        "r1": {**DCGAN_V1, "ema_batchnorm": "recompute", "d_norm": "none", "r1_gamma": 1.0},
        "ema-bn-aug": {
            **DCGAN_V1, "ema_batchnorm": "recompute", "augment": "translation,cutout",
        },
        "ema-bn-deep32": {
            **DCGAN_V1, "ema_batchnorm": "recompute", "generator": "deep", "channels": 32,
            "d_channels": 64,
        },
        "ema-bn-b64": {**DCGAN_V1, "ema_batchnorm": "recompute", "batch_size": 64},
        "ema-bn-deep32-b64": {
            "ema_batchnorm": "recompute", "generator": "deep", "channels": 32,
            "d_channels": 64, "batch_size": 64,
        },
    },
    "vae": {
        "base": {},
        "flow": {"prior": "flow"},
        "flow-d16": {"prior": "flow", "latent_dim": 16},
        "flow-c64": {"prior": "flow", "channels": 64},
    },
    "wgan-gp": {
        "base": {},
        "ema-bn": {"ema_batchnorm": "recompute"},
        "ema-bn-ncritic2": {"ema_batchnorm": "recompute", "n_critic": 2},
        "ema-bn-ttur": {"ema_batchnorm": "recompute", "n_critic": 1, "lr": 1e-4, "lr_d": 3e-4},
        "ema-bn-gp1": {"ema_batchnorm": "recompute", "gp_weight": 1.0},
    },
}  # fmt: skip


def run_variant(
    family: str, name: str, settings: dict[str, Any], epochs: int, samples: int
) -> Path:
    """Train and evaluate one variant (skipped if its evaluation is there); its folder."""
    folder = RUNS / family / name
    result = folder / "heldout.json"
    if result.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "training", "train", family, "--seed", "0", "--epochs",
               str(epochs), "--precision", "fp32", "--run-dir", str(folder)]  # fmt: skip
    for key, value in settings.items():
        command += ["--set", f"{key}={value!r}"]
    with (folder / "log.txt").open("a") as log:
        log.write(" ".join(command) + "\n")
        log.flush()
        subprocess.run(command, check=True, env=env, stdout=log, stderr=log)
        evaluate = [sys.executable, "-m", "training", "evaluate", str(folder / "checkpoint.pt"),
                    "--split", "heldout", "--fd-samples", str(samples)]  # fmt: skip
        started = time.perf_counter()
        out = subprocess.run(evaluate, check=True, env=env, capture_output=True, text=True)
        log.write(out.stderr)
    metrics = json.loads(out.stdout)
    metrics["evaluation"]["seconds"] = round(time.perf_counter() - started, 1)
    result.write_text(json.dumps(metrics, indent=2) + "\n")
    return folder


def report(family: str) -> str:
    """The markdown table of every measured variant of ``family``: what each changes from the
    first (the base), and its held-out figures."""
    rows = [
        "| variant | change from base | held-out FD | KID | precision | recall | "
        "class entropy | train time |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    variants = VARIANTS[family]
    base = next(iter(variants.values()))
    for name, settings in variants.items():
        result = RUNS / family / name / "heldout.json"
        if not result.is_file():
            continue
        m = json.loads(result.read_text())["metrics"]
        changed = {k: v for k, v in settings.items() if base.get(k) != v}
        shown = ", ".join(f"{k}={v}" for k, v in (changed if changed else settings).items())
        rows.append(
            f"| {name} | {shown or 'the defaults'} | {m['fd']:.1f} | {m['kid']:.1f} | "
            f"{m['precision']:.3f} | {m['recall']:.3f} | {m['class_entropy']:.3f} | "
            f"{train_minutes(RUNS / family / name / 'log.txt'):.0f} min |"
        )
    return "\n".join(rows)


EPOCH_LINE = re.compile(r"epoch (\d+): held-out [-\d.e+]+, ([\d.]+) s")


def train_minutes(log: Path) -> float:
    """Minutes of training: the median epoch (from the log's cumulative times, so that a run
    paused for a while is not charged for it) times the epochs."""
    ends = [float(m.group(2)) for m in EPOCH_LINE.finditer(log.read_text())]
    if not ends:
        return math.nan
    epochs = [b - a for a, b in zip([0.0, *ends], ends, strict=False) if b > a]
    return statistics.median(epochs) * len(ends) / 60


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.ablate", description=__doc__)
    parser.add_argument("family", choices=sorted(VARIANTS))
    parser.add_argument("--only", help="comma-separated variant names")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--fd-samples", type=int, default=5000)
    parser.add_argument("--jobs", type=int, default=2, help="variants trained side by side")
    parser.add_argument("--report", action="store_true", help="print the table and stop")
    args = parser.parse_args(argv)
    if args.report:
        print(report(args.family))
        return 0
    variants = VARIANTS[args.family]
    names = args.only.split(",") if args.only else list(variants)
    unknown = [n for n in names if n not in variants]
    if unknown:
        print(f"error: no variant {', '.join(unknown)}; choose from {', '.join(variants)}")
        return 2
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {
            name: pool.submit(
                run_variant, args.family, name, variants[name], args.epochs, args.fd_samples
            )
            for name in names
        }
        for name, future in futures.items():
            print(f"{name}: {future.result()}", flush=True)
    print(report(args.family))
    return 0


if __name__ == "__main__":
    sys.exit(main())
