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


def relativistic_discriminator_loss(real_logits: Array, fake_logits: Array) -> Array:
  """The relativistic standard GAN (RSGAN) discriminator loss (Jolicoeur-Martineau, 2018, "The relativistic
  discriminator: a key element missing from standard GAN", Eq. 7):

      L_D = -E_{(x, z)}[log sigmoid(C(x) - C(G(z)))] = E[softplus(-(C(x) - C(G(z))))]

  with C the raw critic output. Real and generated samples are paired element
  by element (equal batch sizes, or PatchGAN maps of equal shape).
  """
  return jnp.mean(jax.nn.softplus(-(real_logits - fake_logits)))


def relativistic_generator_loss(real_logits: Array, fake_logits: Array) -> Array:
  """The RSGAN generator loss (Jolicoeur-Martineau, 2018, Eq. 8): L_G = E[softplus(-(C(G(z)) - C(x)))]."""
  return jnp.mean(jax.nn.softplus(-(fake_logits - real_logits)))


def relativistic_average_discriminator_loss(real_logits: Array, fake_logits: Array) -> Array:
  """The relativistic average GAN (RaSGAN) discriminator loss (Jolicoeur-Martineau, 2018, Eq. 11):

      L_D = -E_x[log sigmoid(C(x) - E_z C(G(z)))] - E_z[log(1 - sigmoid(C(G(z)) - E_x C(x)))]
          =  E_x[softplus(-(C(x) - mean C(fake)))] + E_z[softplus(C(G(z)) - mean C(real))].

  The same function as TF-GAN's ``relativistic_discriminator_loss`` (which is
  the *average* form; its unit test's values are reproduced in tests/test_toolkit_losses.py).
  """
  real_rel = real_logits - jnp.mean(fake_logits)
  fake_rel = fake_logits - jnp.mean(real_logits)
  return jnp.mean(jax.nn.softplus(-real_rel)) + jnp.mean(jax.nn.softplus(fake_rel))


def relativistic_average_generator_loss(real_logits: Array, fake_logits: Array) -> Array:
  """The RaSGAN generator loss (Jolicoeur-Martineau, 2018, Eq. 12): the discriminator's with the roles swapped,

      L_G = E_z[softplus(-(C(G(z)) - mean C(real)))] + E_x[softplus(C(x) - mean C(fake))];

  G gets gradient from both terms (through the fake mean in the second).
  TF-GAN's ``relativistic_generator_loss``.
  """
  return relativistic_average_discriminator_loss(fake_logits, real_logits)


def relativistic_least_squares_discriminator_loss(real_logits: Array, fake_logits: Array) -> Array:
  """RSLSGAN discriminator loss (Jolicoeur-Martineau, 2018, appendix): L_D = E[(C(x) - C(G(z)) - 1)^2]."""
  return jnp.mean(jnp.square(real_logits - fake_logits - 1.0))


def relativistic_least_squares_generator_loss(real_logits: Array, fake_logits: Array) -> Array:
  """RSLSGAN generator loss (Jolicoeur-Martineau, 2018, appendix): L_G = E[(C(G(z)) - C(x) - 1)^2]."""
  return jnp.mean(jnp.square(fake_logits - real_logits - 1.0))


def relativistic_average_least_squares_discriminator_loss(real_logits: Array, fake_logits: Array) -> Array:
  """RaLSGAN discriminator loss (Jolicoeur-Martineau, 2018, Eq. 14):

  L_D = E_x[(C(x) - E_z C(G(z)) - 1)^2] + E_z[(C(G(z)) - E_x C(x) + 1)^2].
  """
  real_rel = real_logits - jnp.mean(fake_logits)
  fake_rel = fake_logits - jnp.mean(real_logits)
  return jnp.mean(jnp.square(real_rel - 1.0)) + jnp.mean(jnp.square(fake_rel + 1.0))


def relativistic_average_least_squares_generator_loss(real_logits: Array, fake_logits: Array) -> Array:
  """RaLSGAN generator loss (Jolicoeur-Martineau, 2018, Eq. 15):

  L_G = E_z[(C(G(z)) - E_x C(x) - 1)^2] + E_x[(C(x) - E_z C(G(z)) + 1)^2].
  """
  return relativistic_average_least_squares_discriminator_loss(fake_logits, real_logits)


def _softmax_cross_entropy(class_logits: Array, one_hot: Array, label_smoothing: float = 0.0) -> Array:
  if label_smoothing:
    one_hot = one_hot * (1.0 - label_smoothing) + label_smoothing / one_hot.shape[-1]
  return jnp.mean(optax.softmax_cross_entropy(class_logits, one_hot))


def acgan_discriminator_loss(
  real_class_logits: Array, fake_class_logits: Array, one_hot_labels: Array, label_smoothing: float = 0.0
) -> Array:
  """The auxiliary-classifier term of AC-GAN's discriminator (Odena, Olah & Shlens, 2017, Eq. 2, L_C):

      L_C = E[-log P(C = c | x_real)] + E[-log P(C = c | x_fake)],

  the softmax cross-entropy of the discriminator's class logits against the
  class c of each real image and the class each fake was generated for; D
  *minimises* it (it maximises L_C + L_S in the paper's log-likelihood form).
  ``label_smoothing`` softens the real side's targets to
  ``(1 - s) onehot + s / K``. TF-GAN's ``acgan_discriminator_loss`` (same
  convention: a mean over the batch of each side, the two sides summed).
  """
  fake = _softmax_cross_entropy(fake_class_logits, one_hot_labels)
  real = _softmax_cross_entropy(real_class_logits, one_hot_labels, label_smoothing)
  return real + fake


def acgan_generator_loss(fake_class_logits: Array, one_hot_labels: Array) -> Array:
  """AC-GAN's generator class term (Odena et al., 2017): E[-log P(C = c | G(z, c))].

  TF-GAN's ``acgan_generator_loss``.
  """
  return _softmax_cross_entropy(fake_class_logits, one_hot_labels)


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
    real_class_logits, fake_class_logits: the class logits (B, K) of a
      discriminator with an auxiliary classifier (AC-GAN: it returns
      ``(logits, class_logits)``), else None.
  """

  real: Array | None
  fake: Array
  real_logits: Array | None
  fake_logits: Array
  labels: Array | None = None
  critic: Callable[[Array], Array] | None = None
  step: Array | None = None
  real_class_logits: Array | None = None
  fake_class_logits: Array | None = None


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


def _relativistic_pair(discriminator_loss: Callable, generator_loss: Callable) -> GANLoss:
  """A `GANLoss` of two functions of (real_logits, fake_logits); the generator update computes D(real)."""
  return GANLoss(
    lambda o: discriminator_loss(o.real_logits, o.fake_logits),
    lambda o: generator_loss(o.real_logits, o.fake_logits),
    generator_needs_real=True,
  )


def relativistic() -> GANLoss:
  """RSGAN (Jolicoeur-Martineau, 2018): `relativistic_discriminator_loss` and `relativistic_generator_loss`."""
  return _relativistic_pair(relativistic_discriminator_loss, relativistic_generator_loss)


def relativistic_average() -> GANLoss:
  """RaSGAN (Jolicoeur-Martineau, 2018), TF-GAN's relativistic pair: `relativistic_average_discriminator_loss`,
  `relativistic_average_generator_loss`."""
  return _relativistic_pair(relativistic_average_discriminator_loss, relativistic_average_generator_loss)


def relativistic_least_squares() -> GANLoss:
  """RSLSGAN (Jolicoeur-Martineau, 2018): the relativistic standard form of the least-squares loss."""
  return _relativistic_pair(relativistic_least_squares_discriminator_loss, relativistic_least_squares_generator_loss)


def relativistic_average_least_squares() -> GANLoss:
  """RaLSGAN (Jolicoeur-Martineau, 2018): the relativistic average form of the least-squares loss."""
  return _relativistic_pair(
    relativistic_average_least_squares_discriminator_loss, relativistic_average_least_squares_generator_loss
  )


def _class_logits(o: GANOutputs, side: str) -> Array:
  logits = getattr(o, f"{side}_class_logits")
  if logits is None or o.labels is None:
    raise ConfigError(
      "the AC-GAN loss needs class labels and a discriminator with an auxiliary classifier (returning "
      "(logits, class_logits), e.g. SNGANDiscriminator(aux_classes=K); cgan.py --discriminator=sngan_ac) on a "
      "class-conditional run"
    )
  return logits


def acgan(base: str | GANLoss = "non_saturating", weight: float = 1.0, real_label: float = 1.0) -> GANLoss:
  """AC-GAN (Odena et al., 2017): an adversarial loss ``base`` plus ``weight`` times the auxiliary
  classifier's cross-entropy (`acgan_discriminator_loss` for D, `acgan_generator_loss` for G).

  The paper's objective is the log-likelihood pair L_S (source) and L_C
  (class): D maximises L_S + L_C, G maximises L_C - L_S; with ``base`` the
  non-saturating loss (the default) G's source term is its usual
  non-saturating form. The discriminator returns ``(logits, class_logits)``;
  the class targets are the run's labels (the real batch's in the D update,
  the ones drawn for the fakes in the G update). Logs ``d_ac_loss`` / ``g_ac_loss``.
  """
  pair = get_loss(base, real_label=real_label)

  def discriminator(o):
    adv, extra = evaluate_loss(pair.discriminator, o)
    k = _class_logits(o, "fake").shape[-1]
    ac = acgan_discriminator_loss(_class_logits(o, "real"), o.fake_class_logits, jax.nn.one_hot(o.labels, k))
    return adv + weight * ac, {**extra, "d_ac_loss": ac}

  def generator(o):
    adv, extra = evaluate_loss(pair.generator, o)
    logits = _class_logits(o, "fake")
    ac = acgan_generator_loss(logits, jax.nn.one_hot(o.labels, logits.shape[-1]))
    return adv + weight * ac, {**extra, "g_ac_loss": ac}

  return GANLoss(discriminator, generator, generator_needs_real=pair.generator_needs_real)


LOSSES: dict[str, Callable[..., GANLoss] | GANLoss] = {
  "minimax": minimax,
  "non_saturating": non_saturating,
  "wasserstein": wasserstein,
  "least_squares": least_squares,
  "hinge": hinge,
  "relativistic": relativistic,
  "relativistic_average": relativistic_average,
  "relativistic_least_squares": relativistic_least_squares,
  "relativistic_average_least_squares": relativistic_average_least_squares,
  "acgan": acgan,
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
