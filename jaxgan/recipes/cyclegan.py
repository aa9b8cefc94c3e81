"""The CycleGAN recipe ``cyclegan`` (experiments/cyclegan.py): ResNet generators, PatchGANs, cycle + identity, pools.

`build(cfg)` gives the run's `jaxgan.runs.Setup`: the unpaired sources of
both domains (--split, and --eval_split for strips and evaluation; '' for
none), two `jaxgan.models.cyclegan.ResNetGenerator` and two PatchGAN
discriminators, Adam with the paper's constant-then-linear decay (`jaxgan.recipes.gan_settings.optimizers`), the
`jaxgan.families.cyclegan.Config` (lambda 10 both ways, identity 0.5, random
jitter), the history pools and the unpaired training stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jaxgan import runs
from jaxgan.data import paired
from jaxgan.errors import ConfigError
from jaxgan.families import cyclegan
from jaxgan.models.cyclegan import CycleGANDiscriminator, ResNetGenerator
from jaxgan.recipes import gan_settings
from jaxgan.recipes.pix2pix import base_features, translation_jitter

EXPERIMENT = "cyclegan"


def open_sources(cfg: Mapping[str, Any], split: str):
  """(source of A, source of B) of ``split``."""
  try:
    return paired.make_unpaired_sources(
      cfg["dataset"], split, cfg.get("data_dir"), image_size=cfg["image_size"], channels=cfg.get("channels") or None
    )
  except ValueError as e:
    raise ConfigError(str(e)) from None


def build(cfg: Mapping[str, Any], experiment: str = EXPERIMENT) -> runs.Setup:
  """The `jaxgan.runs.Setup` of a cyclegan.py run."""
  runs.require(cfg, "dataset", "image_size", "g_widths", "num_blocks", "patch_size", "lr", "seed")
  source_a, source_b = open_sources(cfg, cfg.get("split", "train"))
  eval_split = cfg.get("eval_split", "test")
  test_a, test_b = open_sources(cfg, eval_split) if eval_split else (source_a, source_b)
  shape_a, shape_b = source_a.images_shape, source_b.images_shape
  if shape_a[0] % 4 or shape_a[1] % 4:
    raise ConfigError(f"--image_size must be divisible by 4, got {shape_a[0]}x{shape_a[1]}")
  config = cyclegan.Config(
    loss=cfg["loss"],
    lambda_a=cfg["cycle_weight"],
    lambda_b=cfg["cycle_weight"],
    lambda_identity=cfg["identity_weight"],
    jitter=translation_jitter(cfg, cfg["image_size"]),
    skip_nonfinite=bool(cfg.get("skip_nonfinite", False)),
    augment=gan_settings.augment(cfg),
    penalties=gan_settings.penalties(cfg),
  )
  if config.lambda_identity and shape_a[-1] != shape_b[-1]:
    raise ConfigError(
      "the identity loss needs domains with equal channel counts: pass --identity_weight=0 or --channels"
    )
  g_tx, d_tx = gan_settings.optimizers(cfg)
  g_base = base_features(cfg, "g_widths", "the generator's c7s1 block")
  d_base = base_features(cfg, "d_widths", "the PatchGAN's first block")

  def generator(channels):
    return ResNetGenerator(channels=channels, base_features=g_base, num_blocks=cfg["num_blocks"])

  def discriminator():
    return gan_settings.discriminator(
      cfg, CycleGANDiscriminator(patch_size=int(cfg["patch_size"]), base_features=d_base)
    )

  def init_one(seed):
    nets = dict(generator_ab=generator(shape_b[-1]), generator_ba=generator(shape_a[-1]))
    nets.update(discriminator_a=discriminator(), discriminator_b=discriminator(), g_tx=g_tx, d_tx=d_tx)
    return cyclegan.init_state(config, seed=seed, **nets, shape_a=shape_a, shape_b=shape_b, pool_size=cfg["pool_size"])

  info = {"sources": (source_a, source_b), "test_sources": (test_a, test_b)}
  seeds, data = (int(cfg["seed"]),), lambda: paired.UnpairedIterator(source_a, source_b, cfg["batch_size"], cfg["seed"])
  return runs.Setup(experiment, "unpaired", cyclegan, dict(cfg), config, seeds, init_one, data, batch_axis=0, info=info)
