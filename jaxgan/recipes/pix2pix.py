"""The Pix2Pix recipe ``pix2pix`` (experiments/pix2pix.py): U-Net G, PatchGAN D, adversarial + 100 L1.

`build(cfg)` gives the run's `jaxgan.runs.Setup`: the paired source of the
training split (and of --eval_split, for strips and evaluation), the
`jaxgan.models.pix2pix` U-Net and PatchGAN, Adam with the papers'
constant-then-linear decay (`jaxgan.recipes.gan_settings.optimizers`: --lr,
--d_lr, --lr_schedule, --decay_start), the `jaxgan.families.pix2pix.Config`
with its random jitter, and the paired training stream. `translation_jitter`
is shared with the CycleGAN recipe.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jaxgan import augment, runs
from jaxgan.data import paired
from jaxgan.errors import ConfigError
from jaxgan.families import pix2pix
from jaxgan.models.pix2pix import PatchGANDiscriminator, UNetGenerator
from jaxgan.recipes import gan_settings

EXPERIMENT = "pix2pix"


def translation_jitter(cfg: Mapping[str, Any], image_size: int) -> augment.Jitter:
  """The random jitter of --jitter, --jitter_size (0: 286/256 of the image size), --jitter_method and --flip."""
  size = (cfg.get("jitter_size") or augment.default_jitter_size(image_size)) if cfg.get("jitter") else 0
  return augment.Jitter(size=size, method=cfg.get("jitter_method", "bilinear"), flip=bool(cfg.get("flip")))


def base_features(cfg: Mapping[str, Any], flag: str, what: str, default: int = 64) -> int:
  """The one number of --g_widths / --d_widths: the channel count of ``what`` (doubled per down-sampling)."""
  return (runs.widths(cfg, flag, 1, f"the channel count of {what}") or (default,))[0]


def open_source(cfg: Mapping[str, Any], split: str):
  try:
    return paired.make_paired_source(
      cfg["dataset"], split, cfg["image_size"], cfg.get("channels") or None, cfg.get("direction", "AtoB")
    )
  except ValueError as e:
    raise ConfigError(str(e)) from None


def build(cfg: Mapping[str, Any], experiment: str = EXPERIMENT) -> runs.Setup:
  """The `jaxgan.runs.Setup` of a pix2pix.py run."""
  runs.require(cfg, "dataset", "image_size", "g_widths", "patch_size", "lr", "seed")
  source = open_source(cfg, cfg.get("split", "train"))
  held_out = open_source(cfg, cfg["eval_split"]) if cfg.get("eval_split") else None
  shape_a, channels_b = source.shape_a, source.shape_b[-1]
  generator = UNetGenerator(
    channels=channels_b,
    base_features=base_features(cfg, "g_widths", "the U-Net's first encoder block"),
    max_features=cfg["max_features"],
    norm=cfg["g_norm"],
    innermost_norm=cfg["innermost_norm"],
    dropout_rate=cfg["g_dropout"],
    skip_connections=cfg["skip_connections"],
  )
  try:
    generator.depth(shape_a[0], shape_a[1])  # a clear error for unusable sizes, before any compile
  except ValueError as e:
    raise ConfigError(f"--image_size={shape_a[0]}: {e}") from None
  discriminator = gan_settings.discriminator(
    cfg,
    PatchGANDiscriminator(
      patch_size=int(cfg["patch_size"]), base_features=base_features(cfg, "d_widths", "the PatchGAN's first block")
    ),
  )
  config = pix2pix.Config(
    loss=cfg["loss"],
    l1_weight=cfg["l1_weight"],
    jitter=translation_jitter(cfg, shape_a[0]),
    skip_nonfinite=bool(cfg.get("skip_nonfinite", False)),
    augment=gan_settings.augment(cfg),
    penalties=gan_settings.penalties(cfg),
  )
  g_tx, d_tx = gan_settings.optimizers(cfg)

  def init_one(seed):
    nets = dict(generator=generator, discriminator=discriminator, g_tx=g_tx, d_tx=d_tx)
    return pix2pix.init_state(config, seed=seed, **nets, input_shape=shape_a, target_channels=channels_b)

  info = {"source": source, "held_out": held_out, "shape_a": tuple(shape_a), "shape_b": tuple(source.shape_b)}
  seeds, data = (int(cfg["seed"]),), lambda: paired.PairedIterator(source, cfg["batch_size"], cfg["seed"])
  return runs.Setup(experiment, "paired", pix2pix, dict(cfg), config, seeds, init_one, data, batch_axis=0, info=info)
