"""Figures written during and after training (PNG, matplotlib's Agg backend).

Every figure reads on its own: a title that names the run and, where it applies,
the step and which generator drew it (`figure_title`: "dcgan mnist · step 12,000
· EMA generator"), labelled axes, and legends outside the axes so they hide no
data. Each ``*_figure`` function builds the matplotlib Figure (tests inspect its
texts); the function of the same name without ``_figure`` writes it as a PNG
through `jaxgan.storage.atomic_write` (no partial file on a full disk) and
returns the path.

* `scatter_2d`: real vs generated points for the 2-D mixtures.
* `loss_curves`: D and G losses (and any other logged scalar) from ``metrics.jsonl``.
* `image_grid` / `save_image_grid`: the raw pixel grid of images (uint8 array /
  PNG, nothing but the images: for anything that measures pixels).
* `grid_figure` / `save_grid_figure`: the same grid as a labelled figure (title,
  row labels such as class names, column headers such as input | output |
  target), the pixels shown unsmoothed at an integer scale.
* `strip_image`: rows of (column 0 | column 1 | ...) images with column headers.
* `mode_histogram`: samples per mode of a 2-D mixture.
* `pixel_histogram` / `pixel_value_w1`: real vs generated pixel-value histograms
  (the figure of seed 000) and the W1 distance between the two distributions.
* `lerp` / `slerp` / `interpolate_latents` / `interpolation_strips`: walks in
  latent space and the image strips they produce.
* `vector_arithmetic_figure`: Radford et al.'s latent vector arithmetic
  (mean z of group A - mean z of B + mean z of C) laid out as a figure.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402
from PIL import Image  # noqa: E402

from jaxgan import storage  # noqa: E402

DPI = 100
MIN_TILE_PX = 48  # labelled grids show each image at least this many pixels tall
PAD_INCHES = 0.1
# Legends go right of the axes, top-aligned, so they never cover data.
OUTSIDE_RIGHT = dict(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)


def figure_title(title: str = "", *, step: int | None = None, ema: bool | None = None) -> str:
  """``title`` followed by what drew the figure, joined by " · ".

  ``figure_title("dcgan mnist", step=12000, ema=True)`` is "dcgan mnist · step 12,000 · EMA generator";
  ``ema=False`` says "raw generator", ``None`` leaves the generator (or the step) out. A
  multi-line ``title`` gets the step and generator on its first line.
  """
  first, _, rest = title.strip().partition("\n")
  parts = [first] if first else []
  if step is not None:
    parts.append(f"step {int(step):,}")
  if ema is not None:
    parts.append("EMA generator" if ema else "raw generator")
  return " · ".join(parts) + (f"\n{rest}" if rest else "")


def _pixel_bbox(fig: Figure) -> Bbox:
  """The tight bounding box (inches) of everything drawn, padded and widened to whole pixels.

  Cropping on whole pixels keeps an image drawn 1:1 (`grid_figure`) on the
  pixel grid of the PNG, so its pixels come out exactly.
  """
  box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(PAD_INCHES)
  x0, y0 = math.floor(box.x0 * DPI) / DPI, math.floor(box.y0 * DPI) / DPI
  x1, y1 = math.ceil(box.x1 * DPI) / DPI, math.ceil(box.y1 * DPI) / DPI
  return Bbox.from_extents(x0, y0, x1, y1)


def _save(fig: Figure, path: str) -> str:
  try:
    return storage.atomic_write(
      path, lambda tmp: fig.savefig(tmp, dpi=DPI, bbox_inches=_pixel_bbox(fig), facecolor="white")
    )
  finally:
    plt.close(fig)


def _legend_outside(ax, **kwargs):
  """A legend right of ``ax`` with opaque handles (scatter points drawn with alpha stay visible)."""
  legend = ax.legend(**OUTSIDE_RIGHT, **kwargs)
  for handle in legend.legend_handles:
    handle.set_alpha(1.0)
  return legend


# ---------------------------------------------------------------------------- 2-D mixtures and curves


def scatter_figure(
  real: np.ndarray,
  fake: np.ndarray,
  *,
  means: np.ndarray | None = None,
  title: str = "",
  step: int | None = None,
  ema: bool | None = None,
  lim: float | None = None,
) -> Figure:
  """Real (blue) and generated (orange) 2-D points, mixture means as crosses; legend right of the plot."""
  real, fake = np.asarray(real), np.asarray(fake)
  fig, ax = plt.subplots(figsize=(5, 5))
  ax.scatter(real[:, 0], real[:, 1], s=2, alpha=0.4, label=f"real ({len(real):,})", c="tab:blue")
  ax.scatter(fake[:, 0], fake[:, 1], s=2, alpha=0.4, label=f"generated ({len(fake):,})", c="tab:orange")
  if means is not None:
    ax.scatter(means[:, 0], means[:, 1], marker="x", c="k", s=20, label="mixture means")
  if lim is None:
    lim = 1.25 * float(np.max(np.abs(real)))
  ax.set_xlim(-lim, lim)
  ax.set_ylim(-lim, lim)
  ax.set_aspect("equal")
  ax.set_xlabel("x[0]")
  ax.set_ylabel("x[1]")
  ax.grid(alpha=0.2)
  for handle in _legend_outside(ax, fontsize=8).legend_handles:
    handle.set_sizes([20.0])  # the points are tiny on the plot; the same size for every entry in the key
  ax.set_title(figure_title(title, step=step, ema=ema), fontsize=9)
  return fig


def scatter_2d(path: str, real: np.ndarray, fake: np.ndarray, **kwargs) -> str:
  """Writes `scatter_figure` (same keyword arguments) to ``path``."""
  return _save(scatter_figure(real, fake, **kwargs), path)


def read_metrics(path: str) -> list[dict]:
  """The records of a ``metrics.jsonl`` file."""
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def loss_curves_figure(
  records: Sequence[dict], keys: Sequence[str] = ("d_loss", "g_loss"), title: str = "", ylabel: str = "loss"
) -> Figure:
  """``keys`` of the metrics records against the iteration; the title ends with the last step plotted."""
  fig, ax = plt.subplots(figsize=(7, 4))
  last = None
  for key in keys:
    pts = [(r["step"], r[key]) for r in records if key in r]
    if pts:
      steps, values = zip(*pts)
      ax.plot(steps, values, label=key, lw=1)
      last = max(last or 0, max(steps))
  ax.set_xlabel("iteration (training step)")
  ax.set_ylabel(ylabel)
  if ax.lines:
    _legend_outside(ax, fontsize=8)
  ax.grid(alpha=0.3)
  head = title.strip()
  if last is not None:
    head = f"{head} · to step {last:,}" if head else f"to step {last:,}"
  ax.set_title(head, fontsize=10)
  return fig


def loss_curves(
  metrics_path: str,
  path: str,
  keys: Sequence[str] = ("d_loss", "g_loss"),
  title: str = "",
  ylabel: str = "loss",
) -> str:
  """Plots ``keys`` against step from ``metrics.jsonl`` (`loss_curves_figure`)."""
  return _save(loss_curves_figure(read_metrics(metrics_path), keys, title, ylabel), path)


def mode_histogram(path: str, counts: Iterable[int], title: str = "") -> str:
  """Bar chart of samples per mode (mode-collapse at a glance)."""
  counts = list(counts)
  fig, ax = plt.subplots(figsize=(7, 3))
  ax.bar(range(len(counts)), counts)
  ax.set_xlabel("mode (index of the mixture component)")
  ax.set_ylabel("high-quality samples")
  ax.set_title(title)
  return _save(fig, path)


# ---------------------------------------------------------------------------- image grids


def to_uint8(images: np.ndarray) -> np.ndarray:
  """float [-1, 1] -> uint8 [0, 255] (rounded, clipped)."""
  return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def image_grid(images: np.ndarray, rows: int | None = None, pad: int = 1) -> np.ndarray:
  """Tiles (N, H, W, C) images in [-1, 1] into one uint8 (H', W', C) image."""
  images = np.asarray(images, np.float32)
  if images.ndim == 3:
    images = images[..., None]
  n, h, w, c = images.shape
  rows = rows or int(np.ceil(np.sqrt(n)))
  cols = int(np.ceil(n / rows))
  grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, c), np.float32)
  for i in range(n):
    r, col = divmod(i, cols)
    grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = images[i]
  return to_uint8(grid)


def _scaled(grid: np.ndarray, scale: int) -> np.ndarray:
  if scale > 1:
    grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
  return grid[..., 0] if grid.shape[-1] == 1 else grid


def _rgb(pixels: np.ndarray) -> np.ndarray:
  """uint8 gray (H, W) or RGB (H, W, 3) as RGB: shown as is, with no colour map to round through."""
  return np.repeat(pixels[..., None], 3, axis=-1) if pixels.ndim == 2 else pixels


def save_image_grid(path: str, images: np.ndarray, rows: int | None = None, scale: int = 1) -> str:
  """Writes `image_grid` as a PNG, each pixel repeated ``scale`` times (the raw pixels, no labels)."""
  grid = _scaled(image_grid(images, rows), scale)
  return storage.atomic_write(path, lambda tmp: Image.fromarray(grid).save(tmp))


def grid_scale(image_height: int, scale: int = 1, min_tile_px: int = MIN_TILE_PX) -> int:
  """The pixel repeat of a labelled grid: ``scale``, raised until an image is ``min_tile_px`` tall."""
  return max(int(scale), -(-int(min_tile_px) // int(image_height)))


def grid_figure(
  images: np.ndarray,
  rows: int | None = None,
  *,
  scale: int = 1,
  title: str = "",
  step: int | None = None,
  ema: bool | None = None,
  row_labels: Sequence[str] | None = None,
  col_labels: Sequence[str] | None = None,
  row_title: str = "",
  col_title: str = "",
  min_tile_px: int = MIN_TILE_PX,
  pad: int = 1,
) -> Figure:
  """`image_grid` as a labelled figure: title, optional row labels (left) and column headers (top).

  The grid is repeated ``grid_scale(H, scale, min_tile_px)`` times per pixel
  and drawn 1:1 (one array pixel per PNG pixel, nearest neighbour, no
  smoothing), so 8x8 digits stay legible and `save_grid_figure` writes the
  exact pixels of `save_image_grid` at that scale, framed by the labels.
  """
  images = np.asarray(images, np.float32)
  if images.ndim == 3:
    images = images[..., None]
  n, h, w = images.shape[:3]
  rows = rows or int(np.ceil(np.sqrt(n)))
  cols = int(np.ceil(n / rows))
  for name, labels, count in (("row_labels", row_labels, rows), ("col_labels", col_labels, cols)):
    if labels is not None and len(labels) != count:
      raise ValueError(f"{name} has {len(labels)} entries for a grid of {rows} rows x {cols} columns")
  scale = grid_scale(h, scale, min_tile_px)
  pixels = _scaled(image_grid(images, rows, pad), scale)
  height, width = pixels.shape[:2]
  fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
  ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
  ax.imshow(_rgb(pixels), interpolation="nearest", resample=False)
  for spine in ax.spines.values():
    spine.set_visible(False)
  centre = lambda i, size: (pad + i * (size + pad) + size / 2) * scale - 0.5  # noqa: E731
  ax.set_yticks([centre(i, h) for i in range(rows)] if row_labels is not None else [])
  if row_labels is not None:
    ax.set_yticklabels([str(label) for label in row_labels], fontsize=9)
  ax.xaxis.tick_top()
  ax.xaxis.set_label_position("top")
  ax.set_xticks([centre(j, w) for j in range(cols)] if col_labels is not None else [])
  if col_labels is not None:
    ax.set_xticklabels([str(label) for label in col_labels], fontsize=9)
  ax.tick_params(length=0)
  if row_title:
    ax.set_ylabel(row_title, fontsize=9)
  if col_title:
    ax.set_xlabel(col_title, fontsize=9)
  head = figure_title(title, step=step, ema=ema)
  if head:
    ax.set_title(head, fontsize=10, pad=6)
  return fig


def save_grid_figure(path: str, images: np.ndarray, rows: int | None = None, **kwargs) -> str:
  """Writes `grid_figure` (same keyword arguments) to ``path``."""
  return _save(grid_figure(images, rows, **kwargs), path)


def strip_tiles(columns: Sequence[np.ndarray]) -> np.ndarray:
  """(rows * len(columns), H, W, C) tiles of the grid whose row i is (columns[0][i] | columns[1][i] | ...).

  Gray columns are repeated to RGB next to RGB ones (e.g. an edge map next to a photo).
  """
  channels = max(c.shape[-1] for c in columns)
  cols = [np.asarray(c, np.float32) for c in columns]
  cols = [np.repeat(c, 3, axis=-1) if c.shape[-1] == 1 and channels == 3 else c for c in cols]
  return np.stack(cols, axis=1).reshape((-1,) + cols[0].shape[1:])


def strip_image(
  path: str,
  columns: Sequence[np.ndarray],
  scale: int = 1,
  *,
  headers: Sequence[str] | None = None,
  title: str = "",
  step: int | None = None,
  ema: bool | None = None,
) -> str:
  """Saves a labelled grid whose row i is (columns[0][i] | columns[1][i] | ...), images in [-1, 1].

  ``headers`` name the columns (e.g. input | output | target); `strip_tiles`
  gives the raw tiles.
  """
  return save_grid_figure(
    path, strip_tiles(columns), rows=len(columns[0]), scale=scale, title=title, step=step, ema=ema, col_labels=headers
  )


# ---------------------------------------------------------------------------- pixel histograms


def pixel_value_w1(real: np.ndarray, fake: np.ndarray, num_quantiles: int = 1000) -> float:
  """1-Wasserstein distance between the marginal distributions of real and generated pixel values.

  W1(P, Q) = integral_0^1 |F_P^{-1}(u) - F_Q^{-1}(u)| du, estimated with
  ``num_quantiles`` mid-point quantiles of each sample. In pixel units ([-1, 1]
  scale): 0 when the values are distributed alike. Unlike a binned distance it
  does not penalise a continuous generator for data quantised to a few grey
  levels (the 8x8 digits have 17).
  """
  u = (np.arange(num_quantiles) + 0.5) / num_quantiles
  qr = np.quantile(np.ravel(real).astype(np.float64), u)
  qf = np.quantile(np.ravel(fake).astype(np.float64), u)
  return float(np.mean(np.abs(qr - qf)))


def pixel_histogram_figure(
  real: np.ndarray,
  fake: np.ndarray,
  *,
  bins: int = 50,
  value_range: tuple[float, float] = (-1.0, 1.0),
  title: str = "",
  step: int | None = None,
  ema: bool | None = None,
) -> Figure:
  """Real (left) and generated (right) pixel-value histograms, as in seed 000.

  Both panels share the bins over ``value_range`` and show densities, so a
  generator whose marginal pixel distribution matches the data's has the same
  shape (e.g. MNIST: a spike at -1, the background, and a smaller one at +1,
  the ink; an untrained tanh generator instead piles its values up near 0).
  The real histogram is repeated as an outline on the right; the title gives
  the W1 distance of `pixel_value_w1`.
  """
  real, fake = np.ravel(np.asarray(real, np.float32)), np.ravel(np.asarray(fake, np.float32))
  edges = np.linspace(value_range[0], value_range[1], bins + 1)
  clip = lambda v: np.clip(v, *value_range)  # noqa: E731
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
  axes[0].hist(clip(real), edges, density=True, color="tab:blue")
  axes[0].set_title("real pixel values", fontsize=9)
  axes[1].hist(clip(fake), edges, density=True, color="tab:orange", label="generated")
  axes[1].hist(clip(real), edges, density=True, histtype="step", color="tab:blue", lw=1, label="real (outline)")
  axes[1].set_title("generated pixel values", fontsize=9)
  _legend_outside(axes[1], fontsize=8)
  for ax in axes:
    ax.set_xlabel(f"pixel value ({value_range[0]:g} = black, {value_range[1]:g} = white)")
    ax.set_yscale("log")
  axes[0].set_ylabel("density (log scale)")
  w1 = pixel_value_w1(real, fake)
  head = figure_title(title, step=step, ema=ema)
  fig.suptitle(f"{head}  (pixel-value W1 {w1:.3f})".strip(), fontsize=10, y=1.0, va="bottom")
  return fig


def pixel_histogram(path: str, real: np.ndarray, fake: np.ndarray, **kwargs) -> str:
  """Writes `pixel_histogram_figure` (same keyword arguments) to ``path``."""
  return _save(pixel_histogram_figure(real, fake, **kwargs), path)


# ---------------------------------------------------------------------------- latent walks


def lerp(z0: np.ndarray, z1: np.ndarray, t: np.ndarray | float) -> np.ndarray:
  """Linear interpolation (1 - t) z0 + t z1 (``t`` broadcasts against the last axis)."""
  t = np.asarray(t, np.float64)[..., None]
  return ((1.0 - t) * np.asarray(z0, np.float64) + t * np.asarray(z1, np.float64)).astype(np.float32)


def slerp(z0: np.ndarray, z1: np.ndarray, t: np.ndarray | float, eps: float = 1e-7) -> np.ndarray:
  """Spherical linear interpolation (Shoemake, 1985; for GANs: White, 2016, "Sampling
  Generative Networks"):

      slerp(z0, z1; t) = sin((1 - t) w) / sin(w) z0 + sin(t w) / sin(w) z1,
      w = arccos(<z0, z1> / (|z0| |z1|)).

  For z ~ N(0, I) in high dimension |z| concentrates near sqrt(d) and two draws
  are nearly orthogonal, so the linear midpoint has norm ~ sqrt(d / 2): a point
  the generator almost never saw. Slerp follows the great circle instead (and
  interpolates the norm linearly when |z0| != |z1|). Falls back to `lerp` when
  the two vectors are (anti)parallel.
  """
  z0, z1 = np.asarray(z0, np.float64), np.asarray(z1, np.float64)
  t = np.asarray(t, np.float64)[..., None]
  n0, n1 = np.linalg.norm(z0, axis=-1, keepdims=True), np.linalg.norm(z1, axis=-1, keepdims=True)
  cos = np.clip(np.sum(z0 * z1, -1, keepdims=True) / np.maximum(n0 * n1, eps), -1.0, 1.0)
  omega = np.arccos(cos)
  sin = np.sin(omega)
  safe = sin > eps
  s = np.where(safe, sin, 1.0)
  w0 = np.where(safe, np.sin((1.0 - t) * omega) / s, 1.0 - t)
  w1 = np.where(safe, np.sin(t * omega) / s, t)
  return (w0 * z0 + w1 * z1).astype(np.float32)


def interpolate_latents(z0: np.ndarray, z1: np.ndarray, num: int, method: str = "linear") -> np.ndarray:
  """``num`` points from z0 to z1 (both ends included): (..., d) -> (..., num, d)."""
  fn = {"linear": lerp, "slerp": slerp}.get(method)
  if fn is None:
    raise ValueError(f"unknown interpolation {method!r}: choose linear or slerp")
  t = np.linspace(0.0, 1.0, num)
  z0, z1 = np.asarray(z0)[..., None, :], np.asarray(z1)[..., None, :]
  return fn(z0, z1, t.reshape((1,) * (z0.ndim - 2) + (num,)))


def _show(ax, images: np.ndarray, rows: int, scale: int = 1) -> None:
  ax.imshow(_rgb(_scaled(image_grid(images, rows), scale)), interpolation="nearest", resample=False)
  ax.set_xticks([])
  ax.set_yticks([])


def interpolation_strips(
  path: str,
  images: np.ndarray,
  *,
  title: str = "",
  step: int | None = None,
  ema: bool | None = None,
  row_labels: Sequence[str] | None = None,
  scale: int = 1,
) -> str:
  """One row per latent walk: ``images`` is (walks, steps, H, W, C) in [-1, 1].

  Columns are headed by the interpolation weight t (0: the walk's start, 1: its
  end); ``row_labels`` name each walk (e.g. "3->8", the classes at its ends).
  """
  images = np.asarray(images)
  walks, num = images.shape[:2]
  return save_grid_figure(
    path,
    images.reshape((walks * num,) + images.shape[2:]),
    walks,
    scale=scale,
    title=title,
    step=step,
    ema=ema,
    row_labels=row_labels,
    col_labels=[f"{t:.2g}" for t in np.linspace(0.0, 1.0, num)],
    col_title="interpolation weight t (z = walk(z_start, z_end; t))",
    row_title="walk (classes at its ends)" if row_labels is not None else "walk",
  )


def vector_arithmetic_figure(
  path: str,
  groups: Sequence[tuple[str, np.ndarray, np.ndarray]],
  results: np.ndarray,
  *,
  result_label: str = "",
  title: str = "",
  step: int | None = None,
  ema: bool | None = None,
) -> str:
  """Latent vector arithmetic as in Radford et al. (2015), Fig. 7.

  Args:
    groups: three ``(label, examples, mean_image)`` for the operands A, B, C of
      ``mean z_A - mean z_B + mean z_C``: a few generated examples (k, H, W, C)
      of each group and G(mean z) of the group (H, W, C), all in [-1, 1].
    results: generated images (n, H, W, C) of the result vector (plus small
      perturbations).
  """
  if len(groups) != 3:
    raise ValueError(f"need three groups (A - B + C), got {len(groups)}")
  results = np.asarray(results)
  scale = grid_scale(results.shape[1])
  fig, axes = plt.subplots(1, 4, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 1, 1, 3]})
  for ax, (label, examples, mean_image), (op, name) in zip(axes, groups, (("", "A"), ("-", "B"), ("+", "C"))):
    examples = np.asarray(examples)
    _show(ax, np.concatenate([examples, np.asarray(mean_image)[None]]), examples.shape[0] + 1, scale)
    ax.set_title(f"{op} {name}: {label}".strip(), fontsize=9)
    ax.set_xlabel(f"{len(examples)} samples,\nlast: G(mean z_{name})", fontsize=7)
  _show(axes[3], results, int(np.ceil(np.sqrt(results.shape[0]))), scale)
  axes[3].set_title(f"= {result_label}".strip(), fontsize=9)
  axes[3].set_xlabel("G(mean z_A - mean z_B + mean z_C + noise); top left: no noise", fontsize=7)
  fig.suptitle(figure_title(title, step=step, ema=ema), fontsize=10, y=1.0, va="bottom")  # above the panel titles
  return _save(fig, path)
