"""Optimisers and learning-rate schedules of every experiment, built with optax in one place.

* `learning_rate` -- a constant rate, or an optax schedule over one network's
  updates: ``linear_decay`` (constant, then linear to 0: DCGAN-style decays and
  the Pix2Pix / CycleGAN rule "keep the same learning rate for the first 100
  epochs and linearly decay the rate to zero over the next 100 epochs") or
  ``cosine`` (constant, then a cosine to 0).
* `make_optimizer` -- Adam (Kingma & Ba, 2015) or RMSProp (the WGAN paper's
  choice for the clipped critic) with that rate, and optionally the critic's
  weight clipping (`jaxgan.regularizers.clip_weights`) chained after it.
* `rate_at_iteration` -- that rate as a host-side function of the training
  iteration, for logging (`jaxgan.trainer.fit`'s ``learning_rates``).

Schedules count the network's own optimiser updates: a critic trained
``n_critic`` times per iteration sees ``n_critic`` times as many.
"""

from __future__ import annotations

from collections.abc import Callable

import optax

from jaxgan import regularizers
from jaxgan.errors import ConfigError

SCHEDULES = ("constant", "linear_decay", "cosine")
OPTIMIZERS = ("adam", "rmsprop")


def learning_rate(
  lr: float,
  schedule: str = "constant",
  *,
  num_updates: int = 0,
  decay_start: float = 0.0,
  decay_updates: int | None = None,
) -> float | optax.Schedule:
  """``lr``, or a schedule over ``num_updates`` updates that holds ``lr`` and then decays to 0.

  The decay begins after the fraction ``decay_start`` of the updates and runs
  to the end (over max(num_updates - begin, 1) updates), or, with
  ``decay_updates``, runs over the last ``decay_updates`` updates.
  ``linear_decay``: lr(t) = lr * (1 - (t - begin) / length), clipped to
  [0, lr]; ``cosine``: lr(t) = lr * (1 + cos(pi (t - begin) / length)) / 2.
  """
  if schedule not in SCHEDULES:
    raise ConfigError(f"unknown learning-rate schedule {schedule!r}: choose one of {', '.join(SCHEDULES)}")
  if schedule == "constant":
    return lr
  if decay_updates is not None:
    if decay_updates < 0:
      raise ConfigError(f"decay_updates must be >= 0, got {decay_updates}")
    begin, length = max(num_updates - decay_updates, 0), decay_updates
  else:
    if not 0.0 <= decay_start <= 1.0:
      raise ConfigError(f"decay_start must be a fraction in [0, 1], got {decay_start}")
    begin = int(decay_start * num_updates)
    length = max(num_updates - begin, 1)
  if length == 0:
    return lr
  if schedule == "linear_decay":
    return optax.linear_schedule(lr, 0.0, length, transition_begin=begin)
  return optax.join_schedules([optax.constant_schedule(lr), optax.cosine_decay_schedule(lr, length)], [begin])


def make_optimizer(
  name: str = "adam",
  lr: float | optax.Schedule = 2e-4,
  *,
  b1: float = 0.5,
  b2: float = 0.999,
  clip_value: float = 0.0,
) -> optax.GradientTransformation:
  """``optax.adam(lr, b1, b2)`` or ``optax.rmsprop(lr)``, then weight clipping to [-c, c] when ``clip_value`` > 0."""
  if name not in OPTIMIZERS:
    raise ConfigError(f"unknown optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")
  tx = optax.rmsprop(lr) if name == "rmsprop" else optax.adam(lr, b1=b1, b2=b2)
  if clip_value:
    tx = optax.chain(tx, regularizers.clip_weights(clip_value))
  return tx


def rate_at_iteration(lr: float | optax.Schedule, updates_per_iteration: int = 1) -> Callable[[int], float]:
  """The learning rate of one network after ``step`` training iterations, as a python float.

  ``lr`` is a constant or an optax schedule over that network's own updates
  (what `learning_rate` returns). A network updated k = ``updates_per_iteration``
  times per iteration (a critic with ``n_critic`` = k) has made k * step updates
  after ``step`` iterations, so the returned function is
  step -> lr(k * step): the rate its next update applies. For logging only
  (`jaxgan.trainer.fit`'s ``learning_rates``); training never calls it.
  """
  if isinstance(updates_per_iteration, bool) or not isinstance(updates_per_iteration, int) or updates_per_iteration < 1:
    raise ConfigError(f"updates_per_iteration must be an integer >= 1, got {updates_per_iteration!r}")
  if not callable(lr):
    rate = float(lr)
    return lambda step: rate
  return lambda step: float(lr(int(step) * updates_per_iteration))
