"""The training families: each exposes the same small API.

* ``Config`` -- a frozen dataclass of the update's static settings;
* ``init_state(config, *, seed, ...)`` -- the initial state from one seed;
* ``train_step(state, batch, config) -> (state, metrics)`` -- one pure
  iteration (compile it with `jaxgan.parallel.compile_step`);
* ``sample(state, inputs, ...)`` -- what the trained model produces.

`gan` is the two-player GAN of Goodfellow et al. (2014) and everything built
on it by changing the model tuple and the loss: the MLP GAN, DCGAN, cGAN,
WGAN / WGAN-GP, LSGAN, hinge GANs, PacGAN. `pix2pix` (Isola et al., 2017) and
`cyclegan` (Zhu et al., 2017) are the image-to-image families. All three are
built on the one update primitive of `jaxgan.update`.
"""

from jaxgan.families import cyclegan, gan, pix2pix

FAMILIES = {"gan": gan, "pix2pix": pix2pix, "cyclegan": cyclegan}
