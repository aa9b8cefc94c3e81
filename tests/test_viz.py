"""Figures read on their own: titles with step and generator, labelled axes, legends off the data,
labelled image grids that keep the exact pixels, and no partial PNG on a full disk."""

from __future__ import annotations

import errno
import os
from unittest import mock

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from jaxgan import viz
from jaxgan.errors import StorageError
from jaxgan.recipes import conditional


@pytest.fixture
def figures(monkeypatch):
  """The Figures the writers of `jaxgan.viz` build, kept open for inspection (they are still saved)."""
  built = []
  save = viz._save

  def keep(fig, path):
    built.append(fig)
    with mock.patch.object(plt, "close"):
      return save(fig, path)

  monkeypatch.setattr(viz, "_save", keep)
  yield built
  for fig in built:
    plt.close(fig)


def texts(fig: Figure) -> list[str]:
  """Every piece of text of a figure: titles, axis labels, tick labels, legend entries."""
  fig.canvas.draw()
  return [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")) if t.get_text()]


def window(artist):
  return artist.get_window_extent(artist.figure.canvas.get_renderer())


def images(n, h=8, w=8, c=1, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (n, h, w, c)).astype(np.float32)


def test_figure_title_names_step_and_generator():
  assert viz.figure_title("dcgan mnist", step=12000, ema=True) == "dcgan mnist · step 12,000 · EMA generator"
  assert viz.figure_title("", step=5, ema=False) == "step 5 · raw generator"
  assert viz.figure_title("run\nmodes 25/25", step=3) == "run · step 3\nmodes 25/25"
  assert viz.figure_title("run") == "run"


def test_grid_figure_labels_rows_and_columns_and_keeps_the_pixels(tmp_path):
  x = images(12, c=3)
  fig = viz.grid_figure(
    x, 3, title="cgan digits", step=200, ema=True, row_labels=["0", "1", "2: two"], col_labels=list("abcd")
  )
  found = texts(fig)
  plt.close(fig)
  assert "cgan digits · step 200 · EMA generator" in found
  assert {"0", "1", "2: two", "a", "b", "c", "d"} <= set(found)
  bare = viz.grid_figure(x, 3)
  assert texts(bare) == []
  plt.close(bare)

  labelled = np.asarray(Image.open(viz.save_grid_figure(str(tmp_path / "l.png"), x, 3, title="t", row_labels="012")))
  scale = viz.grid_scale(8)
  assert scale * 8 >= viz.MIN_TILE_PX
  raw = np.asarray(Image.open(viz.save_image_grid(str(tmp_path / "r.png"), x, 3, scale=scale)))
  assert raw.shape[:2] == (scale * (3 * 9 + 1), scale * (4 * 9 + 1))
  # The labelled PNG frames the very pixels of the raw grid (drawn 1:1, no smoothing).
  rgb, (h, w) = labelled[..., :3], raw.shape[:2]
  assert rgb.shape[0] > h and rgb.shape[1] > w
  hits = [
    (i, j)
    for i in range(rgb.shape[0] - h + 1)
    for j in range(rgb.shape[1] - w + 1)
    if np.array_equal(rgb[i, j], raw[0, 0]) and np.array_equal(rgb[i : i + h, j : j + w], raw)
  ]
  assert len(hits) == 1, hits


def test_grid_figure_refuses_labels_that_do_not_fit():
  with pytest.raises(ValueError, match="row_labels has 2 entries for a grid of 3 rows x 4 columns"):
    viz.grid_figure(images(12), 3, row_labels=["a", "b"])


def test_scatter_legend_lies_outside_the_axes_and_title_names_the_step(tmp_path):
  rng = np.random.default_rng(0)
  means = np.array([(i, j) for i in range(-4, 5, 2) for j in range(-4, 5, 2)], np.float32)
  real = means[rng.integers(0, 25, 500)] + 0.05 * rng.normal(size=(500, 2))
  fig = viz.scatter_figure(real, real, means=means, title="wgan grid25\nmodes 25/25", step=200, ema=True, lim=5.7)
  ax = fig.axes[0]
  found = texts(fig)
  assert "wgan grid25 · step 200 · EMA generator\nmodes 25/25" in found
  assert ax.get_xlabel() and ax.get_ylabel()
  legend, box = window(ax.get_legend()), window(ax)
  assert legend.x0 >= box.x1  # right of the plot: the (4, 4) mode stays visible
  plt.close(fig)
  path = viz.scatter_2d(str(tmp_path / "s.png"), real, real, means=means, step=1)
  assert Image.open(path).size[0] > 500 and os.path.getsize(path) > 10_000


def test_loss_curves_have_a_y_label_and_the_last_step(tmp_path):
  records = [{"step": s, "d_loss": 1.0 / s, "g_loss": 2.0} for s in range(1, 11)]
  fig = viz.loss_curves_figure(records, title="gan digits")
  ax = fig.axes[0]
  assert ax.get_ylabel() == "loss" and ax.get_xlabel().startswith("iteration")
  assert ax.get_title() == "gan digits · to step 10"
  assert window(ax.get_legend()).x0 >= window(ax).x1
  plt.close(fig)


def test_pixel_histogram_title_names_the_generator():
  x = images(20)
  fig = viz.pixel_histogram_figure(x, x, title="gan digits", step=4, ema=False)
  assert fig.get_suptitle().startswith("gan digits · step 4 · raw generator  (pixel-value W1 0.000)")
  assert all(ax.get_xlabel() for ax in fig.axes) and fig.axes[0].get_ylabel()
  assert window(fig.axes[1].get_legend()).x0 >= window(fig.axes[1]).x1
  plt.close(fig)


def test_strips_and_latent_walks_carry_headers(tmp_path, figures):
  a, b = images(4, seed=1), images(4, c=3, seed=2)
  viz.strip_image(str(tmp_path / "s.png"), [a, b, b], headers=("input A", "output G(input)", "target B"), step=7)
  viz.interpolation_strips(str(tmp_path / "i.png"), images(6).reshape(2, 3, 8, 8, 1), row_labels=["1->7", "3->8"])
  groups = [(name, images(2), images(1)[0]) for name in ("thick 1", "thin 1", "thin 7")]
  viz.vector_arithmetic_figure(str(tmp_path / "v.png"), groups, images(9), result_label="thick 7?", step=9, ema=True)
  strip, walk, arithmetic = (set(texts(f)) for f in figures)
  assert {"input A", "output G(input)", "target B", "step 7"} <= strip
  assert {"1->7", "3->8", "0", "0.5", "1"} <= walk and any(t.startswith("interpolation weight t") for t in walk)
  assert {"A: thick 1", "- B: thin 1", "+ C: thin 7", "= thick 7?", "step 9 · EMA generator"} <= arithmetic
  strip_png = np.asarray(Image.open(tmp_path / "s.png"))
  assert strip_png.shape[0] > 4 * 9 * viz.grid_scale(8)  # 4 rows of scaled 8x8 images plus the headers


def test_class_grid_figure_names_each_row(tmp_path, figures):
  labels = conditional.class_labels(["airplane", "1", "cat"], 3)
  assert labels == ["0: airplane", "1", "2: cat"]
  assert conditional.class_labels(None, 2) == ["0", "1"]
  path = conditional.class_grid_figure(str(tmp_path / "g.png"), images(6), labels, title="cgan x", step=3, ema=False)
  found = set(texts(figures[0]))
  assert {"0: airplane", "1", "2: cat", "class (y)", "cgan x · step 3 · raw generator"} <= found
  assert os.path.getsize(path) > 1000


def test_a_full_disk_leaves_no_partial_figure(tmp_path):
  full = OSError(errno.ENOSPC, "No space left on device")
  with mock.patch.object(Figure, "savefig", side_effect=full):
    with pytest.raises(StorageError, match="could not write .*g.png .*free space"):
      viz.save_grid_figure(str(tmp_path / "g.png"), images(4), title="t")
  assert os.listdir(tmp_path) == []
