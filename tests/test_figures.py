"""Pictures of embeddings: a seeded UMAP (cells, and one point per patient for bag tasks) as PNG + HTML, and the
patch-token PCA for patch-14 and patch-16 ViTs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bench.cli import app
from bench.plots import patch_pca, umap_scatter
from bench.runner import RunOptions
from leaderboard.figures import patch_pca_rgb, scatter_html, scatter_png
from tests.conftest import TINY

OPTIONS = RunOptions(progress=False, batch_size=8)


def _not_blank(path, size):
    with Image.open(path) as image:
        assert image.size == size
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.std() > 5  # drawn on, not one colour


def test_umap_of_cells_is_seeded_fitted_on_the_training_rows_and_drawn(image_folder, tmp_path):
    first = umap_scatter(TINY, [f"imagefolder:{image_folder}"], OPTIONS, seed=0, log=print)
    again = umap_scatter(TINY, [f"imagefolder:{image_folder}"], OPTIONS, seed=0, log=print)
    np.testing.assert_array_equal(first.xy, again.xy)  # the same command gives the same picture
    assert first.xy.shape == (36, 2) and np.isfinite(first.xy).all()
    assert 20 <= first.fitted.sum() < 36  # fitted on the first split's training rows, its test rows embedded
    assert sorted(set(first.groups)) == ["a", "b", "c"]
    png = scatter_png(first, tmp_path / "umap.png", thumbnails=5)
    _not_blank(png, (900, 900))
    html = scatter_html(first, tmp_path / "umap.html").read_text()
    assert html.count("<circle") == 36 and "<script" not in html
    assert f"{image_folder}/a/a_000.png · a" in html  # hover: the image and its class


def test_umap_of_a_bag_task_has_one_point_per_patient(tmp_path):
    scatter = umap_scatter(TINY, ["synthetic-bags"], OPTIONS, color_by="fold", seed=0, log=print)
    assert len(scatter.xy) == 40 and set(scatter.groups) == {"train", "test"}  # 4 diagnoses x 10 patients
    assert scatter.fitted.sum() == (scatter.groups == "train").sum()
    assert all(text.startswith("patient ") for text in scatter.hover)


def test_patch_pca_finds_the_cell_and_colours_only_it():
    """A hand-made case: 4x4 grids whose centre 2x2 patches carry another token than the border."""
    rng = np.random.default_rng(0)
    tokens = rng.normal(0, 0.01, (3, 16, 8)) + np.eye(8)[0]
    centre = [5, 6, 9, 10]
    tokens[:, centre] += 3 * np.eye(8)[1] + rng.normal(0, 0.5, (3, 4, 8))
    rgb, foreground = patch_pca_rgb(tokens)
    expected = np.zeros((4, 4), dtype=bool)
    expected[1:3, 1:3] = True
    assert (foreground == expected).all()
    assert (rgb[:, ~expected] == 0).all() and rgb[:, expected].max() == pytest.approx(1.0)


@pytest.mark.parametrize("patch", [14, 16])
def test_patch_pca_runs_for_patch_14_and_16_models(image_folder, tmp_path, patch):
    import timm
    import torch

    options = RunOptions(progress=False, device="cpu")
    if patch == 14:
        name = "vit-s14-random"
    else:  # any timm ViT, with weights as a user would pass them
        name, weights = "timm:vit_tiny_patch16_224", tmp_path / "vit_tiny.pth"
        torch.save(timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0).state_dict(), weights)
        options = RunOptions(progress=False, device="cpu", weights=weights)
    said = []
    images = sorted(image_folder.rglob("*.png"))[::12]
    out = patch_pca(name, images, options, tmp_path / "pca.png", log=said.append)
    assert f"{224 // patch}x{224 // patch} patches of {patch} px" in said[-1]
    with Image.open(out) as image:
        assert image.size[0] >= 3 * 150


def test_plot_commands_say_what_is_wrong(image_folder, tmp_path):
    runner = CliRunner()
    done = runner.invoke(app, ["plot", "patch-pca", "-e", "color-histogram", "--images",
                               str(next(image_folder.rglob("*.png"))), "--out", str(tmp_path / "x.png")])
    assert done.exit_code == 1 and "gives no patch tokens" in done.output
    done = runner.invoke(app, ["plot", "umap", "-e", TINY, "-t", f"imagefolder:{image_folder}", "--color-by",
                               "patient", "--out", str(tmp_path / "u.png"), "--no-progress"])
    assert done.exit_code == 1 and "has no patients" in done.output
