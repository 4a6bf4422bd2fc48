"""The PixelCNN fast sampler: exact by construction, and the same samples as the naive one."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from service.generation import autoregressive  # noqa: E402
from tests.conftest import load_registry, tiny_settings  # noqa: E402
from tests.support.sampler_parity import (  # noqa: E402
    assert_fast_sampler_equals_naive,
    small_trained_store,
)
from training.models.pixelcnn import PixelCNNConfig, PixelCNNNet  # noqa: E402

SMALL = {"channels": 8, "layers": 3, "mixture_components": 3, "batch_size": 32, "epochs": 1}


def test_context_and_row_equal_the_full_forward_and_their_windows_are_tight() -> None:
    torch.manual_seed(0)
    net = PixelCNNNet(PixelCNNConfig(channels=8, layers=4, mixture_components=2)).eval()
    x = torch.randint(0, 256, (2, 1, 28, 28)).float() / 255
    rows, cols = net.context_rows, net.row_columns
    with torch.no_grad():
        full = net(x)
        for i in (0, 3, rows - 1, rows, 27):
            window = x[:, :, max(0, i - rows + 1) : i + 1].clone()
            window[:, :, -1] = 0.5  # row i itself must not matter
            links = net.context(window)
            for j in (0, cols - 1, cols, 27):
                left = max(0, j - cols + 1)
                params = net.row(x[:, :, i : i + 1, left : j + 1], links[..., left : j + 1])
                torch.testing.assert_close(params[:, :, 0, -1], full[:, :, i, j])
        # One row or column fewer than the receptive field is no longer exact.
        i = j = 27
        short = net.context(x[:, :, i - rows + 2 : i + 1])
        assert not torch.allclose(net.row(x[:, :, i : i + 1], short)[:, :, 0, j], full[:, :, i, j])
        links = net.context(x[:, :, i - rows + 1 : i + 1])
        narrow = net.row(x[:, :, i : i + 1, j - cols + 2 :], links[..., j - cols + 2 :])
        assert not torch.allclose(narrow[:, :, 0, -1], full[:, :, i, j])


@pytest.fixture(scope="module")
def small_pixelcnn_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_trained_store(
        tmp_path_factory.mktemp("sampler"), "pixelcnn", "pixelcnn-small", SMALL
    )


def test_fast_sampler_gives_the_same_samples_as_the_naive_one(small_pixelcnn_store: Path) -> None:
    registry = load_registry(tiny_settings(small_pixelcnn_store))
    model = registry.get("pixelcnn-small")
    assert autoregressive.sampler_in_use(model) == "windowed"
    assert_fast_sampler_equals_naive(model)
