"""Figures written during and after training (PNG, matplotlib's Agg backend).

* `scatter_2d`: real vs generated points for the 2-D mixtures.
* `loss_curves`: D and G losses (and any other logged scalar) from ``metrics.jsonl``.
* `image_grid` / `save_image_grid`: a grid of generated images.
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
from collections.abc import Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from jaxgan import storage  # noqa: E402


def _save(fig, path: str) -> str:
  try:
    return storage.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, bbox_inches="tight"))
  finally:
    plt.close(fig)


def scatter_2d(
  path: str,
  real: np.ndarray,
  fake: np.ndarray,
  *,
  means: np.ndarray | None = None,
  title: str = "",
  lim: float | None = None,
) -> str:
  """Real (blue) and generated (orange) 2-D points, mixture means as crosses."""
  real, fake = np.asarray(real), np.asarray(fake)
  fig, ax = plt.subplots(figsize=(5, 5))
  ax.scatter(real[:, 0], real[:, 1], s=2, alpha=0.4, label="real", c="tab:blue")
  ax.scatter(fake[:, 0], fake[:, 1], s=2, alpha=0.4, label="generated", c="tab:orange")
  if means is not None:
    ax.scatter(means[:, 0], means[:, 1], marker="x", c="k", s=20, label="means")
  if lim is None:
    lim = 1.25 * float(np.max(np.abs(real)))
  ax.set_xlim(-lim, lim)
  ax.set_ylim(-lim, lim)
  ax.set_aspect("equal")
  ax.legend(loc="upper right", markerscale=4, fontsize=8)
  ax.set_title(title)
  return _save(fig, path)


def read_metrics(path: str) -> list[dict]:
  """The records of a ``metrics.jsonl`` file."""
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def loss_curves(metrics_path: str, path: str, keys: Sequence[str] = ("d_loss", "g_loss"), title: str = "") -> str:
  """Plots ``keys`` against step from ``metrics.jsonl``."""
  records = read_metrics(metrics_path)
  fig, ax = plt.subplots(figsize=(7, 4))
  for key in keys:
    pts = [(r["step"], r[key]) for r in records if key in r]
    if pts:
      steps, values = zip(*pts)
      ax.plot(steps, values, label=key, lw=1)
  ax.set_xlabel("iteration")
  ax.legend()
  ax.grid(alpha=0.3)
  ax.set_title(title)
  return _save(fig, path)


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


def save_image_grid(path: str, images: np.ndarray, rows: int | None = None, scale: int = 1) -> str:
  """Writes `image_grid` as a PNG, each pixel repeated ``scale`` times."""
  grid = image_grid(images, rows)
  if scale > 1:
    grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
  if grid.shape[-1] == 1:
    grid = grid[..., 0]
  return storage.atomic_write(path, lambda tmp: Image.fromarray(grid).save(tmp))


def strip_image(path: str, columns: Sequence[np.ndarray], scale: int = 1) -> str:
  """Saves a grid whose row i is (columns[0][i] | columns[1][i] | ...), images in [-1, 1].

  Gray columns are shown as RGB next to RGB ones (e.g. input | output | target strips).
  """
  channels = max(c.shape[-1] for c in columns)
  cols = [np.asarray(c, np.float32) for c in columns]
  cols = [np.repeat(c, 3, axis=-1) if c.shape[-1] == 1 and channels == 3 else c for c in cols]
  tiles = np.stack(cols, axis=1).reshape((-1,) + cols[0].shape[1:])
  return save_image_grid(path, tiles, rows=len(cols[0]), scale=scale)


def mode_histogram(path: str, counts: Iterable[int], title: str = "") -> str:
  """Bar chart of samples per mode (mode-collapse at a glance)."""
  counts = list(counts)
  fig, ax = plt.subplots(figsize=(7, 3))
  ax.bar(range(len(counts)), counts)
  ax.set_xlabel("mode")
  ax.set_ylabel("high-quality samples")
  ax.set_title(title)
  return _save(fig, path)


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


def pixel_histogram(
  path: str,
  real: np.ndarray,
  fake: np.ndarray,
  *,
  bins: int = 50,
  value_range: tuple[float, float] = (-1.0, 1.0),
  title: str = "",
) -> str:
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
  axes[0].set_title("real pixel values")
  axes[1].hist(clip(fake), edges, density=True, color="tab:orange")
  axes[1].hist(clip(real), edges, density=True, histtype="step", color="tab:blue", lw=1, label="real")
  axes[1].set_title("generated pixel values")
  axes[1].legend(fontsize=8)
  for ax in axes:
    ax.set_xlabel("pixel value")
    ax.set_yscale("log")
  axes[0].set_ylabel("density (log scale)")
  w1 = pixel_value_w1(real, fake)
  fig.suptitle(f"{title}  (pixel-value W1 {w1:.3f})".strip(), fontsize=10, y=1.04)
  return _save(fig, path)


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


def _show(ax, images: np.ndarray, rows: int) -> None:
  grid = image_grid(images, rows)
  ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
  ax.set_xticks([])
  ax.set_yticks([])


def interpolation_strips(
  path: str, images: np.ndarray, *, title: str = "", row_labels: Sequence[str] | None = None
) -> str:
  """One row per latent walk: ``images`` is (walks, steps, H, W, C) in [-1, 1]."""
  images = np.asarray(images)
  walks, num = images.shape[:2]
  fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * num), max(1.0, 0.6 * walks) + 0.5))
  _show(ax, images.reshape((walks * num,) + images.shape[2:]), walks)
  if row_labels:
    h = images.shape[2] + 1
    ax.set_yticks([1 + h * i + h / 2 for i in range(walks)])
    ax.set_yticklabels(row_labels, fontsize=7)
  ax.set_title(title, fontsize=9)
  return _save(fig, path)


def vector_arithmetic_figure(
  path: str,
  groups: Sequence[tuple[str, np.ndarray, np.ndarray]],
  results: np.ndarray,
  *,
  result_label: str = "",
  title: str = "",
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
  fig, axes = plt.subplots(1, 4, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 1, 1, 3]})
  for ax, (label, examples, mean_image), op in zip(axes, groups, ("", "-", "+")):
    examples = np.asarray(examples)
    _show(ax, np.concatenate([examples, np.asarray(mean_image)[None]]), examples.shape[0] + 1)
    ax.set_title(f"{op} {label}".strip(), fontsize=9)
    ax.set_xlabel("last: G(mean z)", fontsize=7)
  results = np.asarray(results)
  _show(axes[3], results, int(np.ceil(np.sqrt(results.shape[0]))))
  axes[3].set_title(f"= {result_label}".strip(), fontsize=9)
  fig.suptitle(title, fontsize=10)
  return _save(fig, path)
