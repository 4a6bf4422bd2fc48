#!/usr/bin/env bash
# Retrain and export the models shipped in model_store/, exactly as they were made.
# About 1.5 hours on 2 CPU cores (bf16 autocast); checkpoints go to runs/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
STORE=${STORE:-model_store}

# The classifier first: every other model's Fréchet distance is measured in its feature space.
$PY -m training train classifier --seed 0
$PY -m training export runs/classifier-fashion-mnist/checkpoint.pt --store "$STORE" --name classifier-fashion

$PY -m training train vae --seed 0
$PY -m training export runs/vae-fashion-mnist/checkpoint.pt --store "$STORE" --name vae-fashion \
  --classifier "$STORE/classifier-fashion.classifier"

$PY -m training train dcgan --seed 0
$PY -m training export runs/dcgan-fashion-mnist/checkpoint.pt --store "$STORE" --name dcgan-fashion \
  --classifier "$STORE/classifier-fashion.classifier"

# Sampling a PixelCNN takes 784 network passes per image, so its Fréchet distance uses fewer
# samples (the card says how many, and its floor uses as many real images).
$PY -m training train pixelcnn --seed 0 --epochs 5
$PY -m training export runs/pixelcnn-fashion-mnist/checkpoint.pt --store "$STORE" --name pixelcnn-fashion \
  --classifier "$STORE/classifier-fashion.classifier" --fd-samples 300
