"""Settings from flags shared by the recipes: the GAN family's config (``gan``, ``dcgan``, ``cgan``, ``wgan_toy``)
and every recipe's optimisers (Pix2Pix and CycleGAN too).

* `config(cfg, **overrides)` -- the `jaxgan.families.gan.Config` of the flags
  every GAN-family script has (--loss, --n_critic, --n_gen, --latent_dim,
  --latent_dist, --real_label, --ema_decay, --pack, --skip_nonfinite) and its
  penalties;
* `penalties(cfg)` -- WGAN-GP (--gp_weight), R1 (--r1_weight, lazy with
  --r1_every), DRAGAN (--dragan_weight), bCR (--bcr_weight) and LeCam
  (--lecam_weight, --lecam_decay), in that order, where the script has them;
* `loss(cfg)`, `augment(cfg)`, `discriminator(cfg, module)` -- the loss
  (AC-GAN with --ac_weight), DiffAugment of --diffaugment, and the
  discriminator wrapped in spectral normalisation with --spectral_norm;
* `optimizers(cfg)` -- (g_tx, d_tx): --optimizer (Adam by default) at --lr
  and --d_lr with --lr_schedule over each network's own updates (G:
  num_steps x n_gen, D: num_steps x n_critic), the critic's weight clipping
  (--clip_value) chained after it;
* `learning_rates(cfg)` -- {"g_lr", "d_lr"}: those rates as functions of the
  training iteration, which the trainer logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jaxgan import augment as augment_lib
from jaxgan import losses, regularizers
from jaxgan import optimizers as optimizers_lib
from jaxgan.families import gan
from jaxgan.models.layers import SpectralNormalized


def penalties(cfg: Mapping[str, Any]) -> tuple[regularizers.Penalty, ...]:
  """The D penalties of the flags, in this order: --gp_weight (WGAN-GP lambda), --r1_weight (R1 gamma; lazy
  with --r1_every), --dragan_weight (DRAGAN lambda), --bcr_weight (bCR lambda_real = lambda_fake) and
  --lecam_weight (LeCam lambda, anchors' decay --lecam_decay)."""
  out = []
  if cfg.get("gp_weight"):
    out.append(regularizers.wgan_gp(cfg["gp_weight"]))
  if cfg.get("r1_weight"):
    out.append(regularizers.r1(cfg["r1_weight"], every=int(cfg.get("r1_every") or 1)))
  if cfg.get("dragan_weight"):
    out.append(regularizers.dragan(cfg["dragan_weight"]))
  if cfg.get("bcr_weight"):
    out.extend(regularizers.bcr(cfg["bcr_weight"], cfg["bcr_weight"]))
  if cfg.get("lecam_weight"):
    out.append(regularizers.lecam(cfg["lecam_weight"], decay=cfg.get("lecam_decay") or 0.99))
  return tuple(out)


def loss(cfg: Mapping[str, Any]) -> str | losses.GANLoss:
  """--loss, or for --loss=acgan with --ac_weight other than 1 the AC-GAN loss with that class weight."""
  name, weight = cfg["loss"], cfg.get("ac_weight")
  if name == "acgan" and weight is not None and weight != 1.0:
    return losses.acgan(weight=weight, real_label=cfg.get("real_label", 1.0))
  return name


def augment(cfg: Mapping[str, Any]) -> augment_lib.DiffAugment | None:
  """DiffAugment of --diffaugment (a policy such as ``color,translation,cutout``), None when it is empty."""
  policy = cfg.get("diffaugment") or ""
  if isinstance(policy, (list, tuple)):
    policy = ",".join(policy)
  return augment_lib.DiffAugment(policy) if policy else None


def discriminator(cfg: Mapping[str, Any], module: Any) -> Any:
  """``module``, spectrally normalised as a whole (`jaxgan.models.layers.SpectralNormalized`) with
  --spectral_norm: every weight of rank >= 2 divided by its largest singular value (Miyato et al., 2018)."""
  return SpectralNormalized(module) if cfg.get("spectral_norm") else module


def config(cfg: Mapping[str, Any], **overrides: Any) -> gan.Config:
  """The run's `jaxgan.families.gan.Config` (flags a script lacks take the Config's defaults)."""
  settings = {name: cfg[name] for name in ("n_critic", "latent_dim", "latent_dist", "ema_decay")}
  real_label = cfg.get("real_label", 1.0)
  gan_loss = loss(cfg)
  settings.update(
    loss=gan_loss,
    n_gen=cfg.get("n_gen", 1),
    real_label=real_label if isinstance(gan_loss, str) else 1.0,
    pack=cfg.get("pack", 1),
    penalties=penalties(cfg),
    skip_nonfinite=bool(cfg.get("skip_nonfinite", False)),
    augment=augment(cfg),
  )
  return gan.Config(**{**settings, **overrides})


def d_lr(cfg: Mapping[str, Any]) -> float:
  """The discriminator's learning rate: --d_lr, or --lr when it is unset (None, or 0 in older flags)."""
  return cfg.get("d_lr") or cfg["lr"]


def _rates(cfg: Mapping[str, Any]):
  """((G rate, G updates per iteration), (D rate, D updates per iteration)): constants or optax schedules."""
  g_per, d_per = cfg.get("n_gen", 1), cfg.get("n_critic", 1)

  def rate(lr, per_iteration):
    return optimizers_lib.learning_rate(
      lr,
      cfg.get("lr_schedule", "constant"),
      num_updates=cfg["num_steps"] * per_iteration,
      decay_start=cfg.get("decay_start", 0.0),
    )

  return (rate(cfg["lr"], g_per), g_per), (rate(d_lr(cfg), d_per), d_per)


def optimizers(cfg: Mapping[str, Any]):
  """(g_tx, d_tx): G at --lr, D at --d_lr (default --lr), the critic clipped to [-c, c] when --clip_value > 0."""
  (g_rate, _), (d_rate, _) = _rates(cfg)

  def tx(rate, clip=0.0):
    return optimizers_lib.make_optimizer(
      cfg.get("optimizer", "adam"), rate, b1=cfg["b1"], b2=cfg["b2"], clip_value=clip
    )

  return tx(g_rate), tx(d_rate, cfg.get("clip_value") or 0.0)


def learning_rates(cfg: Mapping[str, Any]) -> dict[str, Any]:
  """{"g_lr", "d_lr"}: each network's rate as a function of the iteration, for `jaxgan.trainer.fit`'s logging.

  The same schedules `optimizers` builds: G makes --n_gen updates per
  iteration, D --n_critic, so after ``step`` iterations D's next update uses
  its schedule at ``n_critic * step``.
  """
  (g_rate, g_per), (d_rate, d_per) = _rates(cfg)
  return {
    "g_lr": optimizers_lib.rate_at_iteration(g_rate, g_per),
    "d_lr": optimizers_lib.rate_at_iteration(d_rate, d_per),
  }
