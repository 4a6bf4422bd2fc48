"""`python -m training {train,evaluate,export}`."""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path
from typing import Any

from .data import DATASETS, Dataset, DatasetMissingError, name_of, spec
from .models import MODEL_CLASSES
from .own import OwnData

CLASSIFIER_HELP = (
    "the feature extractor of FD and KID: a classifier's run folder or checkpoint, its exported "
    "graph folder or .onnx file, or 'random-features' (the label-free fallback). Default: the "
    "shipped datasets' model_store/classifier-fashion.classifier; for --data with classes "
    "runs/classifier-<data> (python -m training train classifier --data PATH); for --data "
    "without classes random-features (docs/training.md, 'Your own images')"
)


def _setting(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _temperatures(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(t) for t in text.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected numbers like 0.7,0.8,0.9, got {text!r}") from e
    if not all(0 < t < 1 for t in values):
        raise argparse.ArgumentTypeError(f"temperatures lie in (0, 1), got {text!r}")
    return values


def _size(text: str) -> int:
    try:
        size = int(text)
    except ValueError:
        size = 0
    if not 28 <= size <= 64:
        raise argparse.ArgumentTypeError(f"a size from 28 to 64 pixels, got {text!r}")
    return size


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("family", choices=sorted(MODEL_CLASSES))
    p.add_argument("--dataset", choices=DATASETS, help="a shipped dataset (default: fashion-mnist)")
    p.add_argument(
        "--data",
        type=Path,
        metavar="PATH",
        help="your own images instead: a folder of PNG, JPEG and WebP files (one subfolder per "
        "class, when there are subfolders) or an .npz with 'images' and optional 'labels' "
        "(docs/training.md, 'Your own images')",
    )
    p.add_argument(
        "--size",
        type=_size,
        metavar="N",
        help="with --data: crop each image to its centre square and resize it to NxN (28 to 64; "
        "default: the images' own size, which must be the same for all)",
    )
    p.add_argument(
        "--channels",
        type=int,
        choices=(1, 3),
        help="with --data: 1 (grey) or 3 (RGB); default: 1 when every image is grey, else 3",
    )
    p.add_argument("--epochs", type=int, help="override the family's default")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument(
        "--set",
        type=_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other field of the family's config, e.g. --set channels=64",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, help="train on the first N images only (smoke runs)")
    p.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        default="fp32",
        help="autocast precision for training (evaluation is always fp32); auto: bf16 on a CPU "
        "with bf16 instructions (AMX or AVX512-BF16), fp32 elsewhere "
        "(bench/profiling.py training-speed measures both)",
    )
    p.add_argument("--patience", type=int, help="stop after this many epochs without a better "
                   "held-out FD (the family's default: never)")  # fmt: skip
    p.add_argument(
        "--classifier",
        type=Path,
        metavar="RUN_OR_FILE",
        help=CLASSIFIER_HELP + "; the held-out FD tracked every epoch uses it (skipped, with a "
        "warning, when it is not there)",
    )
    p.add_argument("--threads", type=int, help="torch threads (default: one per core)")
    p.add_argument("--no-channels-last", action="store_true", help="keep the NCHW layout")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks")
    p.add_argument("--run-dir", type=Path, help="default: runs/<family>-<dataset>")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue the run in RUN_DIR where it stopped (the same as --run-dir; "
                   "a run folder is always resumed unless --no-resume)")  # fmt: skip
    p.add_argument("--no-resume", action="store_true")


def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--classifier", type=Path, metavar="RUN_OR_FILE", help=CLASSIFIER_HELP)
    p.add_argument("--fd-samples", type=int, default=10_000)
    p.add_argument("--iwae-k", type=int, default=100)
    p.add_argument("--eval-limit", type=int, help="evaluate on the first N test images only")
    p.add_argument(
        "--temperatures",
        type=_temperatures,
        default=(),
        metavar="T,T,...",
        help="sampling temperatures below 1 whose FD and class entropy the pixel-by-pixel "
        "families also measure, e.g. 0.7,0.8,0.9 (1.0 is always measured)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one family (resumes from its checkpoint)")
    _train_args(p)

    p = sub.add_parser("evaluate", help="evaluate a checkpoint on the test split, print JSON")
    p.add_argument("checkpoint", type=Path, help="a checkpoint, or a run folder (its best epoch)")
    _eval_args(p)
    p.add_argument(
        "--split",
        choices=("test", "heldout"),
        default="test",
        help="measure against the test split (the card's figures) or the held-out split "
        "(to choose between recipes without looking at the test split)",
    )

    p = sub.add_parser("export", help="evaluate, export verified ONNX and write the model card")
    p.add_argument("checkpoint", type=Path, help="a checkpoint, or a run folder (its best epoch)")
    p.add_argument("--name", required=True, help="model name in the store, e.g. vae-fashion")
    p.add_argument("--store", type=Path, default=Path("model_store"))
    p.add_argument("--version", type=int, help="default: one more than the newest")
    p.add_argument("--metrics", type=Path, help="JSON from `evaluate`, instead of evaluating")
    _eval_args(p)

    p = sub.add_parser(
        "evaluate-served",
        help="FD against sampling temperature of a PixelCNN or PixelRNN as a running service "
        "serves it (its fast exact sampler), on the test split; print JSON",
    )
    p.add_argument("model", help="the model's name in the service, e.g. pixelcnn-fashion")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the running service")
    p.add_argument("--classifier", type=Path, metavar="RUN_OR_FILE", help=CLASSIFIER_HELP)
    p.add_argument("--fd-samples", type=int, default=1000)
    p.add_argument("--temperatures", type=_temperatures, default=(0.7, 0.8, 0.9),
                   metavar="T,T,...", help="below 1 (1.0 is always measured); default "
                   "0.7,0.8,0.9")  # fmt: skip
    p.add_argument("--card", type=Path, help="also write the figures into the served "
                   "version's card, e.g. model_store/pixelcnn-fashion.v2.json")  # fmt: skip
    return parser


def _train(args: argparse.Namespace) -> Path:
    import torch

    from .trainer import train

    overrides = dict(args.set)
    for key in ("epochs", "batch_size", "lr", "patience"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.resume and args.run_dir and args.resume != args.run_dir:
        raise ValueError("--resume and --run-dir name different folders")
    if args.resume and not (args.resume / "checkpoint.pt").is_file():
        raise FileNotFoundError(f"{args.resume} holds no checkpoint.pt to resume")
    dataset: Dataset = args.dataset or "fashion-mnist"
    if args.data is not None:
        if args.dataset:
            raise ValueError("--data and --dataset both name the data; give one")
        dataset = OwnData(args.data.resolve(), args.size, args.channels)
    elif args.size is not None or args.channels is not None:
        raise ValueError("--size and --channels apply to your own images (--data)")
    # read and check the data, and the family's fit to it, before anything is written
    data = spec(dataset)
    problem = MODEL_CLASSES[args.family][0].unsupported(data)
    if problem:
        raise ValueError(problem)
    run_dir = args.resume or args.run_dir or Path("runs") / f"{args.family}-{name_of(dataset)}"
    tracks = MODEL_CLASSES[args.family][0].tracks_samples
    classifier = _tracking_extractor(args, dataset) if tracks else None
    if args.threads:
        torch.set_num_threads(args.threads)
    return train(
        args.family, dataset, run_dir, seed=args.seed, overrides=overrides,
        limit=args.limit, precision=args.precision, resume=not args.no_resume,
        classifier=classifier, channels_last=not args.no_channels_last,
        compile_model=args.compile,
    )  # fmt: skip


def _tracking_extractor(args: argparse.Namespace, dataset: Dataset) -> Path | None:
    """The feature extractor of the held-out FD tracked every epoch, checked against the data
    before training starts; None (with a warning) when there is none."""
    from .extractors import RANDOM_FEATURES, default_classifier, open_extractor
    from .extractors import train_classifier_hint as hint

    classifier: Path | None = args.classifier
    if classifier is None:
        found = default_classifier(dataset)
        labelled = not isinstance(dataset, OwnData) or spec(dataset).num_classes >= 2
        if labelled and found.exists():
            classifier = found
        elif isinstance(dataset, OwnData):
            classifier = Path(RANDOM_FEATURES)
            if labelled:
                print(f"warning: no classifier of this data at {found}: the held-out FD uses "
                      f"{RANDOM_FEATURES} (train one first for a better one: {hint(dataset)}); "
                      "evaluate and export will ask for it", file=sys.stderr)  # fmt: skip
        else:
            print(f"warning: no classifier at {found}: held-out FD is not tracked",
                  file=sys.stderr)  # fmt: skip
            return None
    elif str(classifier) != RANDOM_FEATURES and not classifier.exists():
        print(f"warning: no classifier at {classifier}: held-out FD is not tracked",
              file=sys.stderr)  # fmt: skip
        return None
    open_extractor(dataset, classifier)  # a classifier of other images or classes is refused
    return classifier


def _evaluate_served(args: argparse.Namespace) -> dict[str, Any]:
    from genserve import GenserveError

    from .served import add_to_card, served_quality

    version = None
    if args.card is not None:  # checked before minutes of sampling, not after
        card = json.loads(args.card.read_text())
        if card.get("name") != args.model:
            raise ValueError(f"{args.card} is the card of {card.get('name')!r}, not {args.model!r}")
        version = card.get("version")
    try:
        measured = served_quality(
            args.url, args.model, args.temperatures, args.fd_samples, args.classifier, version
        )
    except GenserveError as e:  # no service there, no such model, a refused request
        raise ValueError(f"{args.url}: {e}") from e
    if args.card is not None:
        add_to_card(args.card, measured)
    return measured


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            print(_train(args))
        elif args.command == "evaluate":
            from .evaluate import evaluate_checkpoint

            metrics = evaluate_checkpoint(
                args.checkpoint, args.classifier, fd_samples=args.fd_samples,
                iwae_k=args.iwae_k, limit=args.eval_limit, split=args.split,
                temperatures=args.temperatures,
            )  # fmt: skip
            print(json.dumps(metrics, indent=2))
        elif args.command == "export":
            from .export import export_checkpoint

            given = json.loads(args.metrics.read_text()) if args.metrics else None
            folder = export_checkpoint(
                args.checkpoint, args.store, args.name, version=args.version, metrics=given,
                classifier=args.classifier, fd_samples=args.fd_samples, iwae_k=args.iwae_k,
                eval_limit=args.eval_limit, temperatures=args.temperatures,
            )  # fmt: skip
            print(folder)
        elif args.command == "evaluate-served":
            print(json.dumps(_evaluate_served(args), indent=2))
    except (DatasetMissingError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
