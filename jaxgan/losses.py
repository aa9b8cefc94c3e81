"""Adversarial losses as pure functions of discriminator outputs.

Every function takes raw discriminator outputs ("logits": no sigmoid applied) and
returns a scalar to *minimise*. Discriminator losses take the outputs on a real
batch and on a generated batch; generator losses take the outputs on a generated
batch. Outputs of any shape are averaged over all elements, so a PatchGAN's
(B, H, W) map works as well as a (B,) vector.

`LOSSES` maps the names accepted by the experiments' ``--loss`` flag to a
`GANLoss` pair.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxgan.errors import ConfigError

Array = jax.Array


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


@dataclasses.dataclass(frozen=True)
class GANLoss:
  """A discriminator loss and a generator loss that belong together."""

  discriminator: Callable[..., Array]
  generator: Callable[[Array], Array]


LOSSES: dict[str, GANLoss] = {
  "minimax": GANLoss(minimax_discriminator_loss, minimax_generator_loss),
  "non_saturating": GANLoss(minimax_discriminator_loss, non_saturating_generator_loss),
  "wasserstein": GANLoss(wasserstein_critic_loss, wasserstein_generator_loss),
  "least_squares": GANLoss(least_squares_discriminator_loss, least_squares_generator_loss),
  "hinge": GANLoss(hinge_discriminator_loss, hinge_generator_loss),
}


def get_loss(name: str) -> GANLoss:
  """Returns the `GANLoss` called ``name``; a clear ValueError for unknown names."""
  try:
    return LOSSES[name]
  except KeyError:
    raise ConfigError(f"unknown loss {name!r}: choose one of {', '.join(sorted(LOSSES))}") from None
