"""The single trainer: seeded, resumable at every epoch, watching the held-out split.

A run folder holds ``checkpoint.pt`` (the last epoch: weights, optimisers, the EMA inside the
weights, every random state, the schedule's position and the metrics history), ``best.pt`` (the
epoch with the best held-out figure, which export takes) and ``metrics.jsonl`` (one line per
epoch).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .checkpoints import BEST, CHECKPOINT, METRICS, build_model
from .data import Dataset, load, name_of
from .hardware import auto_precision, cpu_description
from .imageset import DataError
from .models.base import RUN_SETTINGS, lr_factor
from .own import OwnData
from .tracking import HeldoutTracker, Selection

PRECISIONS = ("auto", "fp32", "bf16")
HELDOUT_LOSS_IMAGES = 1000


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    if path.suffix == ".jsonl":
        tmp.write_text("".join(json.dumps(line) + "\n" for line in obj))
    else:
        torch.save(obj, tmp)
    os.replace(tmp, path)


def _random_states() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate()}  # fmt: skip


def _restore_random_states(states: dict[str, Any] | torch.Tensor) -> None:
    if isinstance(states, torch.Tensor):  # checkpoints before 2026-12 kept torch's state only
        torch.set_rng_state(states)
        return
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def _same_run(old: dict[str, Any], new: dict[str, Any]) -> bool:
    keep = {k: v for k, v in old.items() if k not in RUN_SETTINGS}
    return keep == {k: v for k, v in new.items() if k not in RUN_SETTINGS}


def train(
    family: str,
    dataset: Dataset,
    run_dir: Path,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    limit: int | None = None,
    precision: str = "fp32",
    resume: bool = True,
    progress: bool = True,
    classifier: Path | None = None,
    channels_last: bool = True,
    compile_model: bool = False,
) -> Path:
    """Train (or resume training) and return the last checkpoint's path.

    The same family, dataset, config, seed and precision give the same weights, whether the run
    was interrupted and resumed at an epoch boundary or not. With ``classifier`` (an exported
    classifier graph), the samples' FD and KID to the held-out split are measured after every
    epoch and pick the best checkpoint; without it, the held-out loss does.

    ``dataset`` is a shipped dataset's name or one's own images (``OwnData``); these are read
    and checked, and the family's fit to them, before anything is written.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
    precision = auto_precision() if precision == "auto" else precision
    ckpt_path = run_dir / CHECKPOINT
    torch.manual_seed(seed)
    model = build_model(family, overrides or {}, dataset)
    cfg = model.config
    optimizers = model.configure_optimizers()
    state: dict[str, Any] = {
        "family": family, "dataset": name_of(dataset), "seed": seed, "precision": precision,
        "config": dataclasses.asdict(cfg), "epoch": 0, "step": 0, "seconds": 0.0,
        "history": [], "limit": limit, "hardware": cpu_description(),
        "torch": torch.__version__, "selection": None, "stopped": None,
    }  # fmt: skip
    if isinstance(dataset, OwnData):
        state["data"] = dataset.record()  # where the images came from, and what they were
    if resume and ckpt_path.exists():
        old = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if cfg.lr_schedule != "constant" and cfg.lr_horizon is None:
            cfg.lr_horizon = old["config"].get("lr_horizon")  # the horizon the run started with
            state["config"] = dataclasses.asdict(cfg)
        same = ("family", "dataset", "seed", "precision", "limit", "data")
        if any(old.get(k) != state.get(k) for k in same) or not _same_run(
            old["config"], state["config"]
        ):
            raise ValueError(
                f"{ckpt_path} was trained with other settings; use another --run-dir or --no-resume"
            )
        model.load_state_dict(old["model"])
        for opt, opt_state in zip(optimizers, old["optimizers"], strict=True):
            opt.load_state_dict(opt_state)
        _restore_random_states(old["rng"])
        for k in ("epoch", "step", "seconds", "history", "selection"):
            state[k] = old.get(k, state[k])
        print(f"resuming {ckpt_path} after epoch {state['epoch']}", file=sys.stderr)
    elif cfg.lr_schedule != "constant" and cfg.lr_horizon is None:
        cfg.lr_horizon = cfg.epochs
        state["config"] = dataclasses.asdict(cfg)
    for opt in optimizers:
        for group in opt.param_groups:
            group.setdefault("initial_lr", group["lr"])

    train_set = load(dataset, "train")
    x_all, y_all = train_set.float_images(), train_set.labels
    if limit:
        x_all, y_all = x_all[:limit], y_all[:limit]
    held = load(dataset, "heldout")
    x_val, y_val = held.float_images()[:HELDOUT_LOSS_IMAGES], held.labels[:HELDOUT_LOSS_IMAGES]
    if isinstance(dataset, OwnData) and len(x_all) < cfg.batch_size:
        raise DataError(
            f"{dataset.path}: {len(x_all)} training images, fewer than a batch of "
            f"{cfg.batch_size}; add images or pass a smaller --batch-size"
        )
    tracker = None
    if classifier is not None and cfg.heldout_samples > 0 and model.tracks_samples:
        tracker = HeldoutTracker(dataset, classifier, cfg.heldout_samples)
    selection = Selection(**state["selection"]) if state["selection"] else None
    if selection is None:
        selection = Selection("heldout_fd" if tracker else "val")
    elif selection.metric == "heldout_fd" and tracker is None:
        raise ValueError(
            f"{ckpt_path} keeps its best epoch by held-out FD: resume it with the classifier it "
            "was tracked with and heldout_samples above 0"
        )
    if selection.exhausted(cfg.patience):
        print(f"{ckpt_path} stopped early: no better {selection.metric} in {cfg.patience} "
              "epochs; raise patience to go on", file=sys.stderr)  # fmt: skip
        return ckpt_path
    run_dir.mkdir(parents=True, exist_ok=True)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=layout)  # type: ignore[call-overload]
    if compile_model:
        model.compile_for_training()
    batches = math.ceil(len(x_all) / cfg.batch_size)

    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        model.train()
        order = torch.randperm(
            len(x_all), generator=torch.Generator().manual_seed(seed * 1000 + epoch)
        )
        started = time.perf_counter()
        bar = tqdm(
            range(batches), desc=f"{family} epoch {epoch}/{cfg.epochs}", unit="batch",
            disable=not progress, dynamic_ncols=True, file=sys.stderr,
        )  # fmt: skip
        sums: dict[str, float] = {}
        for b in bar:
            if cfg.lr_schedule != "constant":
                factor = lr_factor(cfg, state["step"] / batches)
                for opt in optimizers:
                    for group in opt.param_groups:
                        group["lr"] = group["initial_lr"] * factor
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            x = x_all[idx].contiguous(memory_format=layout)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                logs = model.training_step(x, y_all[idx], optimizers)
            state["step"] += 1
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
            rate = (b + 1) * cfg.batch_size / (time.perf_counter() - started)
            shown = {k: f"{v:.4g}" for k, v in logs.items()} | {"img/s": f"{rate:.0f}"}
            if selection.best_epoch:
                shown[f"best {selection.metric}"] = f"{selection.best:.4g}"
            bar.set_postfix(shown)
        train_seconds = time.perf_counter() - started
        model.end_of_epoch()
        model.eval()
        record: dict[str, Any] = {
            "epoch": epoch, "step": state["step"],
            "lr": optimizers[0].param_groups[0]["lr"],
            **{k: v / batches for k, v in sums.items()},
            "images_per_second": round(len(x_all) / train_seconds, 1),
            "val": model.validation_loss(x_val, y_val),
        }  # fmt: skip
        if tracker:
            record.update(tracker.measure(model))
        state["seconds"] += time.perf_counter() - started
        record["seconds"] = round(state["seconds"], 1)
        improved = selection.update(epoch, record[selection.metric])
        state["history"].append(record)
        state.update(epoch=epoch, model=model.state_dict(), rng=_random_states())
        state["selection"] = dataclasses.asdict(selection)
        state["optimizers"] = [opt.state_dict() for opt in optimizers]
        if selection.exhausted(cfg.patience):
            state["stopped"] = f"no better {selection.metric} in {cfg.patience} epochs"
        _save_atomic(state, ckpt_path)
        if improved:
            _save_atomic(state, run_dir / BEST)
        _save_atomic(state["history"], run_dir / METRICS)
        tracked = f", held-out FD {record['heldout_fd']:.1f}" if tracker else ""
        print(
            f"{family} epoch {epoch}: held-out loss {record['val']:.4f}{tracked}, "
            f"{record['images_per_second']:.0f} img/s, {state['seconds']:.0f} s"
            + (" (best)" if improved else ""),
            file=sys.stderr,
        )
        if state["stopped"]:
            print(f"stopping early: {state['stopped']}", file=sys.stderr)
            break
    return ckpt_path
