"""Figures written during and after training (PNG, matplotlib's Agg backend).

* `scatter_2d`: real vs generated points for the 2-D mixtures.
* `loss_curves`: D and G losses (and any other logged scalar) from ``metrics.jsonl``.
* `image_grid` / `save_image_grid`: a grid of generated images.
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp.png"
  fig.savefig(tmp, dpi=100, bbox_inches="tight")
  plt.close(fig)
  os.replace(tmp, path)
  return path


def scatter_2d(path: str, real: np.ndarray, fake: np.ndarray, *, means: np.ndarray | None = None,
               title: str = "", lim: float | None = None) -> str:
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


def loss_curves(metrics_path: str, path: str, keys: Sequence[str] = ("d_loss", "g_loss"),
                title: str = "") -> str:
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
    grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = images[i]
  return np.clip(np.round((grid + 1.0) * 127.5), 0, 255).astype(np.uint8)


def save_image_grid(path: str, images: np.ndarray, rows: int | None = None, scale: int = 1) -> str:
  """Writes `image_grid` as a PNG, each pixel repeated ``scale`` times."""
  grid = image_grid(images, rows)
  if scale > 1:
    grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
  if grid.shape[-1] == 1:
    grid = grid[..., 0]
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(grid).save(path)
  return path


def mode_histogram(path: str, counts: Iterable[int], title: str = "") -> str:
  """Bar chart of samples per mode (mode-collapse at a glance)."""
  counts = list(counts)
  fig, ax = plt.subplots(figsize=(7, 3))
  ax.bar(range(len(counts)), counts)
  ax.set_xlabel("mode")
  ax.set_ylabel("high-quality samples")
  ax.set_title(title)
  return _save(fig, path)
