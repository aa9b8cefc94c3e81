"""The Pix2Pix recipe ``pix2pix`` (experiments/pix2pix.py): U-Net G, PatchGAN D, adversarial + 100 L1.

`build(cfg)` gives the run's `jaxgan.runs.Setup`: the paired source of the
training split (and of --eval_split, for strips and evaluation), the
`jaxgan.models.pix2pix` U-Net and PatchGAN, Adam with the papers'
constant-then-linear decay, the `jaxgan.families.pix2pix.Config` with its
random jitter, and the paired training stream. `translation_optimizer` and
`translation_jitter` are shared with the CycleGAN recipe.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jaxgan import augment, optimizers, runs
from jaxgan.data import paired
from jaxgan.errors import ConfigError
from jaxgan.families import pix2pix
from jaxgan.models.pix2pix import PatchGANDiscriminator, UNetGenerator

EXPERIMENT = "pix2pix"


def translation_optimizer(cfg: Mapping[str, Any]):
  """Adam(--lr, --b1, --b2) at --lr for the first num_steps - decay_steps updates, then linearly to 0."""
  rate = optimizers.learning_rate(
    cfg["lr"], "linear_decay", num_updates=cfg["num_steps"], decay_updates=cfg.get("decay_steps", 0)
  )
  return optimizers.make_optimizer("adam", rate, b1=cfg["b1"], b2=cfg["b2"])


def translation_jitter(cfg: Mapping[str, Any], image_size: int) -> augment.Jitter:
  """The random jitter of --jitter, --jitter_size (0: 286/256 of the image size), --jitter_method and --flip."""
  size = (cfg.get("jitter_size") or augment.default_jitter_size(image_size)) if cfg.get("jitter") else 0
  return augment.Jitter(size=size, method=cfg.get("jitter_method", "bilinear"), flip=bool(cfg.get("flip")))


def open_source(cfg: Mapping[str, Any], split: str):
  try:
    return paired.make_paired_source(
      cfg["dataset"], split, cfg["image_size"], cfg.get("channels") or None, cfg.get("direction", "AtoB")
    )
  except ValueError as e:
    raise ConfigError(str(e)) from None


def build(cfg: Mapping[str, Any], experiment: str = EXPERIMENT) -> runs.Setup:
  """The `jaxgan.runs.Setup` of a pix2pix.py run."""
  runs.require(cfg, "dataset", "image_size", "base_features", "patch_size", "lr", "seed")
  source = open_source(cfg, cfg.get("train_split", "train"))
  held_out = open_source(cfg, cfg["eval_split"]) if cfg.get("eval_split") else None
  shape_a, channels_b = source.shape_a, source.shape_b[-1]
  generator = UNetGenerator(
    channels=channels_b,
    base_features=cfg["base_features"],
    max_features=cfg["max_features"],
    norm=cfg["g_norm"],
    innermost_norm=cfg["innermost_norm"],
    dropout_rate=cfg["dropout_rate"],
    skip_connections=cfg["skip_connections"],
  )
  try:
    generator.depth(shape_a[0], shape_a[1])  # a clear error for unusable sizes, before any compile
  except ValueError as e:
    raise ConfigError(f"--image_size={shape_a[0]}: {e}") from None
  discriminator = PatchGANDiscriminator(patch_size=int(cfg["patch_size"]), base_features=cfg["d_base_features"])
  config = pix2pix.Config(
    loss=cfg["loss"],
    l1_weight=cfg["l1_weight"],
    jitter=translation_jitter(cfg, shape_a[0]),
    skip_nonfinite=bool(cfg.get("skip_nonfinite", False)),
  )
  tx = translation_optimizer(cfg)

  def init_one(seed):
    nets = dict(generator=generator, discriminator=discriminator, g_tx=tx, d_tx=tx)
    return pix2pix.init_state(config, seed=seed, **nets, input_shape=shape_a, target_channels=channels_b)

  info = {"source": source, "held_out": held_out, "shape_a": tuple(shape_a), "shape_b": tuple(source.shape_b)}
  seeds, data = (int(cfg["seed"]),), lambda: paired.PairedIterator(source, cfg["batch_size"], cfg["seed"])
  return runs.Setup(experiment, "paired", pix2pix, dict(cfg), config, seeds, init_one, data, batch_axis=0, info=info)
