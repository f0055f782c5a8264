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


@pytest.mark.slow
def test_umap_with_numbas_compiled_kernels_in_a_fresh_process(image_folder, tmp_path):
    """The default suite runs umap-learn uncompiled (tests/conftest.py): here the command as users run it, numba's
    JIT on, in its own process."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {**os.environ, "NUMBA_DISABLE_JIT": "0", "PYTHONPATH": str(REPO), "BENCH_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-m", "bench", "plot", "umap", "-e", TINY, "-t", f"imagefolder:{image_folder}",
                           "--out", str(tmp_path / "u.png")], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    _not_blank(tmp_path / "u.png", (900, 900))


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


@pytest.mark.slow  # suite time; patients as points stay in the default run through the attention-pooled test
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
    assert done.exit_code == 2 and "gives no patch tokens" in done.output  # a usage error (README, "Exit codes")
    done = runner.invoke(app, ["plot", "umap", "-e", TINY, "-t", f"imagefolder:{image_folder}", "--color-by",
                               "patient", "--out", str(tmp_path / "u.png"), "--no-progress"])
    assert done.exit_code == 2 and "has no patients" in done.output


def test_a_one_task_umap_is_kept_for_the_html_leaderboard(image_folder, tmp_path):
    """`bench plot umap` of one task keeps a small copy beside the extractor's results on it; the HTML board
    draws it (one circle per point, hostile names escaped), and reports a damaged copy instead of failing."""
    from leaderboard.maps import MAP_FILE
    from leaderboard.tables import read_results, render

    runner, results, task = CliRunner(), tmp_path / "results", f"imagefolder:{image_folder}"
    done = runner.invoke(app, ["run", "-e", TINY, "-t", task, "-p", "knn-1", "--results", str(results),
                               "--no-progress"])
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["plot", "umap", "-e", TINY, "-t", task, "--out", str(tmp_path / "u.png"),
                               "--results", str(results), "--no-progress"])
    assert done.exit_code == 0, done.output
    (kept,) = results.rglob(MAP_FILE)
    assert kept.parent == next(results.rglob("knn-1.json")).parent  # beside the pair's results
    board = render(read_results(results), "html", n_boot=0)
    start = board.index('<figure class="map">')
    figure = board[start:board.index("</figure>", start)]
    assert figure.count("<circle") == 36 and "class: " in figure and "36 points, seed 0" in figure
    kept.write_text("{not json")
    problems: list[str] = []
    board = render(read_results(results), "html", n_boot=0, problems=problems)
    assert '<figure class="map">' not in board
    assert problems == [f"no map: map file {kept} cannot be read (JSONDecodeError: Expecting property name enclosed "
                        f"in double quotes: line 1 column 2 (char 1)); make it again with `bench plot umap` or "
                        f"delete {kept}"]


# the per-class head's column choice under -m slow (suite time); the gated head stays in the default run
@pytest.mark.parametrize("head", ["abmil-gated", pytest.param("abmil-paper", marks=pytest.mark.slow)])
def test_patients_attention_pooled_by_a_stored_abmil_result(tmp_path, head):
    """--pool PROTOCOL: each patient's cells weighted by the attention its test fold's model gave them (the
    predicted class's column for the per-class head), checked against the exported features by hand."""
    import dataclasses

    import pandas as pd

    from bench.core.errors import UsageError
    from protocols import PROTOCOLS, get_protocol

    quick = f"{head}-quick"
    PROTOCOLS.add(quick, dataclasses.replace(get_protocol(head), name=quick, epochs=3), summary="test: 3 epochs")
    try:
        results, runner = tmp_path / "r", CliRunner()
        options = RunOptions(progress=False, batch_size=64, results_dir=results)
        with pytest.raises(UsageError, match=f"no attention of {quick} at .*; run `bench run -e .* -p {quick}"):
            umap_scatter(TINY, ["synthetic-bags"], options, pool=quick, log=print)
        done = runner.invoke(app, ["run", "-e", TINY, "-t", "synthetic-bags", "-p", quick, "--results",
                                   str(results), "--no-progress", "--batch-size", "64"])
        assert done.exit_code == 0, done.output
        done = runner.invoke(app, ["extract", "-e", TINY, "-t", "synthetic-bags", "--export", str(tmp_path / "x"),
                                   "--no-progress"])
        assert done.exit_code == 0, done.output
        scatter = umap_scatter(TINY, ["synthetic-bags"], options, pool=quick, seed=0, log=print)
    finally:
        PROTOCOLS.remove(quick)
    assert len(scatter.xy) == 40 and all(f"attention-pooled by {quick}" in text for text in scatter.hover)
    # by hand, for one patient: the exported features, the attention file and the predictions
    features = np.load(tmp_path / "x" / "features.npy")
    index = pd.read_csv(tmp_path / "x" / "index.csv")
    folder = next(results.rglob("synthetic-bags"))
    attention = pd.read_csv(folder / f"{quick}.attention.csv", dtype={"bag": str})
    predicted = pd.read_csv(folder / f"{quick}.predictions.csv", dtype={"bag": str})
    row = {p: i for i, p in enumerate(index["path"])}
    bag = attention["bag"].iloc[0]
    cells = attention[attention["bag"] == bag]
    column = "attention" if "attention" in cells else f"attention_{predicted.set_index('bag').loc[bag, 'prediction']}"
    expected = cells[column].to_numpy() @ features[[row[p] for p in cells["path"]]] / cells[column].sum()
    from bench.plots import attention_pooled
    from bench.runner import load_pair

    pair = load_pair(TINY, "synthetic-bags", options, print)
    design = pair.dataset.design(pair.keep, pair.dataset.classes)
    pooled = attention_pooled(pair, design, quick, results)
    np.testing.assert_allclose(pooled[design.bag_ids.index(bag)], expected, rtol=1e-5, atol=1e-6)
    record = folder / f"{quick}.json"
    record.write_text(record.read_text().replace(pair.cached.manifest["key"], "0" * 16))
    with pytest.raises(UsageError, match="computed on other features than these"):
        attention_pooled(pair, design, quick, results)
