"""Adversarial losses: the maths as pure functions, and losses as values that the steps call.

Two layers:

* The maths. Every ``*_loss`` function takes raw discriminator outputs
  ("logits": no sigmoid applied) and returns a scalar to *minimise*.
  Discriminator losses take the outputs on a real batch and on a generated
  batch; generator losses take the outputs on a generated batch. Outputs of any
  shape are averaged over all elements, so a PatchGAN's (B, H, W) map works as
  well as a (B,) vector.
* Losses as values (TF-GAN's style). A `GANLoss` holds a discriminator and a
  generator loss, each a function of one `GANOutputs`: everything the update
  produced (the real and generated samples, the discriminator's outputs on
  both, the labels, the critic as a function, the update count). Any loss from
  a paper is then one function, also those that need D(real) in the generator
  update (relativistic losses: set ``generator_needs_real`` and the step
  computes it; otherwise it does not). A loss function returns the scalar, or
  ``(scalar, {name: metric})`` to log more.

`LOSSES` maps the names of the experiments' ``--loss`` flag to constructors
(``minimax(real_label=1.0) -> GANLoss``); `register_loss` adds a user loss
under a name, `get_loss` turns a name (or a `GANLoss`) into the `GANLoss` a
step uses. `l1_loss` is the reconstruction term of Pix2Pix and CycleGAN.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxgan.errors import ConfigError

Array = jax.Array
"""@private The array type of the annotations (`jax.Array`), kept out of the API reference."""


def minimax_discriminator_loss(real_logits: Array, fake_logits: Array, real_label: float = 1.0) -> Array:
  """The discriminator's side of the original GAN game (Goodfellow et al., 2014).

  D maximises  E_x[log D(x)] + E_z[log(1 - D(G(z)))]  with D = sigmoid(logits),
  i.e. minimises the binary cross-entropy

      L_D = -E_x[t log D(x) + (1 - t) log(1 - D(x))] - E_z[log(1 - D(G(z)))].

  ``real_label`` = t is the target for real samples; t = 0.9 is one-sided label
  smoothing (Salimans et al., 2016, "Improved Techniques for Training GANs"):
  only the real target is softened, the fake target stays 0.
  """
  real_targets = jnp.full_like(real_logits, real_label)
  real_term = optax.sigmoid_binary_cross_entropy(real_logits, real_targets)
  fake_term = optax.sigmoid_binary_cross_entropy(fake_logits, jnp.zeros_like(fake_logits))
  return jnp.mean(real_term) + jnp.mean(fake_term)


def minimax_generator_loss(fake_logits: Array) -> Array:
  """The saturating generator loss of the minimax game (Goodfellow et al., 2014).

  G minimises  E_z[log(1 - D(G(z)))] = -E_z[softplus(l)]  for logits l.
  Its gradient vanishes when D confidently rejects samples (early training),
  which is why the paper recommends the non-saturating form.
  """
  return -jnp.mean(jax.nn.softplus(fake_logits))


def non_saturating_generator_loss(fake_logits: Array) -> Array:
  """The non-saturating generator loss (Goodfellow et al., 2014, Sec. 3).

  G maximises E_z[log D(G(z))], i.e. minimises  E_z[-log sigmoid(l)] = E_z[softplus(-l)].
  Same fixed point as the minimax loss, strong gradients early in training.
  """
  return jnp.mean(jax.nn.softplus(-fake_logits))


def wasserstein_critic_loss(real_logits: Array, fake_logits: Array, real_label: float = 1.0) -> Array:
  """The WGAN critic loss (Arjovsky et al., 2017, "Wasserstein GAN").

  By Kantorovich-Rubinstein duality  W(P_r, P_g) = sup_{||f||_L <= 1} E_r[f] - E_g[f];
  the critic f maximises that difference, so minimises  E_g[f(x~)] - E_r[f(x)].
  The Lipschitz constraint comes from weight clipping or a gradient penalty.
  ``real_label`` is accepted for a uniform signature and ignored.
  """
  del real_label
  return jnp.mean(fake_logits) - jnp.mean(real_logits)


def wasserstein_generator_loss(fake_logits: Array) -> Array:
  """The WGAN generator loss: minimise  -E_z[f(G(z))]  (Arjovsky et al., 2017)."""
  return -jnp.mean(fake_logits)


def least_squares_discriminator_loss(real_logits: Array, fake_logits: Array, real_label: float = 1.0) -> Array:
  """LSGAN discriminator loss (Mao et al., 2017), with a = 0, b = ``real_label``:

      L_D = 1/2 E_x[(D(x) - b)^2] + 1/2 E_z[(D(G(z)) - a)^2]

  on the raw outputs (no sigmoid).
  """
  return 0.5 * jnp.mean(jnp.square(real_logits - real_label)) + 0.5 * jnp.mean(jnp.square(fake_logits))


def least_squares_generator_loss(fake_logits: Array) -> Array:
  """LSGAN generator loss (Mao et al., 2017), with c = 1:  L_G = 1/2 E_z[(D(G(z)) - 1)^2]."""
  return 0.5 * jnp.mean(jnp.square(fake_logits - 1.0))


def hinge_discriminator_loss(real_logits: Array, fake_logits: Array, real_label: float = 1.0) -> Array:
  """Hinge discriminator loss (Lim & Ye, 2017; Miyato et al., 2018):

      L_D = E_x[max(0, 1 - D(x))] + E_z[max(0, 1 + D(G(z)))].

  ``real_label`` is accepted for a uniform signature and ignored.
  """
  del real_label
  return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))


def hinge_generator_loss(fake_logits: Array) -> Array:
  """Hinge generator loss: L_G = -E_z[D(G(z))] (Miyato et al., 2018)."""
  return -jnp.mean(fake_logits)


def l1_loss(x: Array, y: Array) -> Array:
  """The L1 distance  mean |x - y|  over every element (Pix2Pix's L_L1, CycleGAN's cycle and identity terms)."""
  return jnp.mean(jnp.abs(x - y))


# ---------------------------------------------------------------------------- losses as values


@dataclasses.dataclass(frozen=True)
class GANOutputs:
  """Everything one update produced, handed to a loss or a penalty (TF-GAN's ``GANModel`` in spirit).

  Attributes:
    real: the real batch as the discriminator sees it (PacGAN-packed; for
      Pix2Pix the (input, target) pairs); None in a generator update unless
      the loss declares ``generator_needs_real``.
    fake: the generated batch as the discriminator sees it. In the
      discriminator update it carries no gradient to the generator; in the
      generator update it does.
    real_logits: D(real), or None where ``real`` is None.
    fake_logits: D(fake).
    labels: the class labels the discriminator is conditioned on (None for
      unconditional models): in the discriminator update the real batch's
      labels (the fakes are generated with the same labels); in the generator
      update the labels drawn for the fakes (D(real) there is conditioned on
      the real batch's own labels).
    critic: ``x -> D(x)`` with the discriminator parameters of this update,
      the same labels and training mode -- what gradient penalties
      differentiate.
    step: how many updates the network being updated has had (int32 scalar).
  """

  real: Array | None
  fake: Array
  real_logits: Array | None
  fake_logits: Array
  labels: Array | None = None
  critic: Callable[[Array], Array] | None = None
  step: Array | None = None


LossFn = Callable[[GANOutputs], Any]


@dataclasses.dataclass(frozen=True)
class GANLoss:
  """A discriminator loss and a generator loss that belong together.

  Attributes:
    discriminator: ``GANOutputs -> scalar`` (or ``(scalar, metrics)``), minimised by D.
    generator: ``GANOutputs -> scalar`` (or ``(scalar, metrics)``), minimised by G.
    generator_needs_real: the generator loss reads ``real_logits`` (relativistic
      losses); the generator update then also runs D on a real batch.
  """

  discriminator: LossFn
  generator: LossFn
  generator_needs_real: bool = False


def evaluate_loss(fn: LossFn, outputs: GANOutputs) -> tuple[Array, dict]:
  """``fn(outputs)`` as (scalar, extra metrics): a loss may return the scalar alone or with a dict."""
  value = fn(outputs)
  if isinstance(value, tuple):
    value, extra = value
    return value, dict(extra)
  return value, {}


def minimax(real_label: float = 1.0) -> GANLoss:
  """The minimax game of Goodfellow et al. (2014): `minimax_discriminator_loss`, `minimax_generator_loss`."""
  return GANLoss(
    lambda o: minimax_discriminator_loss(o.real_logits, o.fake_logits, real_label),
    lambda o: minimax_generator_loss(o.fake_logits),
  )


def non_saturating(real_label: float = 1.0) -> GANLoss:
  """The minimax discriminator with the non-saturating generator loss (Goodfellow et al., 2014, Sec. 3)."""
  return GANLoss(
    lambda o: minimax_discriminator_loss(o.real_logits, o.fake_logits, real_label),
    lambda o: non_saturating_generator_loss(o.fake_logits),
  )


def _wasserstein_critic(o: GANOutputs) -> tuple[Array, dict]:
  estimate = jnp.mean(o.real_logits) - jnp.mean(o.fake_logits)
  return wasserstein_critic_loss(o.real_logits, o.fake_logits), {"wasserstein_estimate": estimate}


def wasserstein() -> GANLoss:
  """The WGAN critic and generator losses (Arjovsky et al., 2017); logs the estimate E_r[f] - E_g[f]."""
  return GANLoss(_wasserstein_critic, lambda o: wasserstein_generator_loss(o.fake_logits))


def least_squares(real_label: float = 1.0) -> GANLoss:
  """LSGAN (Mao et al., 2017) with a = 0, b = ``real_label``, c = 1."""
  return GANLoss(
    lambda o: least_squares_discriminator_loss(o.real_logits, o.fake_logits, real_label),
    lambda o: least_squares_generator_loss(o.fake_logits),
  )


def hinge() -> GANLoss:
  """The hinge loss of Lim & Ye (2017) and Miyato et al. (2018)."""
  return GANLoss(
    lambda o: hinge_discriminator_loss(o.real_logits, o.fake_logits),
    lambda o: hinge_generator_loss(o.fake_logits),
  )


LOSSES: dict[str, Callable[..., GANLoss] | GANLoss] = {
  "minimax": minimax,
  "non_saturating": non_saturating,
  "wasserstein": wasserstein,
  "least_squares": least_squares,
  "hinge": hinge,
}


def register_loss(name: str, loss: GANLoss | Callable[..., GANLoss], *, overwrite: bool = False) -> None:
  """Makes ``name`` a loss every step and every experiment's ``--loss`` accepts.

  ``loss`` is a `GANLoss`, or a constructor returning one; a constructor with
  a ``real_label`` parameter also takes the experiments' ``--real_label``
  (label smoothing). Register before the experiment defines its flags.

  Example (the relativistic average GAN of Jolicoeur-Martineau, 2018)::

      def ragan_d(o):
        return jnp.mean(jax.nn.softplus(-(o.real_logits - o.fake_logits.mean()))) + \
               jnp.mean(jax.nn.softplus(o.fake_logits - o.real_logits.mean()))
      ...
      losses.register_loss("ragan", losses.GANLoss(ragan_d, ragan_g, generator_needs_real=True))
  """
  if name in LOSSES and not overwrite:
    raise ConfigError(f"a loss named {name!r} is registered already: choose another name or pass overwrite=True")
  if not isinstance(loss, GANLoss) and not callable(loss):
    raise ConfigError(f"register_loss({name!r}, ...) takes a GANLoss or a function returning one")
  LOSSES[name] = loss


def get_loss(loss: str | GANLoss, *, real_label: float = 1.0) -> GANLoss:
  """The `GANLoss` a step uses: ``loss`` itself, or the one registered as ``loss`` built with ``real_label``.

  Raises `ConfigError` for an unknown name, or a ``real_label`` other than 1
  for a loss that has no real target (Wasserstein, hinge, a user `GANLoss`).
  """
  if isinstance(loss, GANLoss):
    if real_label != 1.0:
      raise ConfigError(f"real_label={real_label} applies to the named losses that take it, not to a GANLoss value")
    return loss
  try:
    entry = LOSSES[loss]
  except (KeyError, TypeError):
    raise ConfigError(f"unknown loss {loss!r}: choose one of {', '.join(sorted(LOSSES))}") from None
  if isinstance(entry, GANLoss):
    built, takes_label = entry, False
  else:
    takes_label = "real_label" in inspect.signature(entry).parameters
    built = entry(real_label=real_label) if takes_label else entry()
  if real_label != 1.0 and not takes_label:
    smoothing = ", ".join(sorted(n for n, e in LOSSES.items() if _takes_real_label(e)))
    raise ConfigError(
      f"loss {loss!r} has no real-sample target, so real_label={real_label} (label smoothing) "
      f"does not apply: use real_label=1, or one of {smoothing}"
    )
  return built


def _takes_real_label(entry: Any) -> bool:
  return not isinstance(entry, GANLoss) and "real_label" in inspect.signature(entry).parameters
