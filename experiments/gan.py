r"""The original GAN (Goodfellow et al., 2014) on images: MLP generator, MLP or maxout discriminator.

  python experiments/gan.py --flagfile=experiments/flags/gan_digits.flags --workdir=/tmp/gan_digits

Goodfellow, Pouget-Abadie, Mirza, Xu, Warde-Farley, Ozair, Courville & Bengio,
"Generative Adversarial Nets", NeurIPS 2014: Algorithm 1 alternates k
discriminator steps (--n_critic) with one generator step (--n_gen) on

    min_G max_D  E_x[log D(x)] + E_z[log(1 - D(G(z)))]          (--loss=minimax)

or, as the paper recommends in practice, the generator maximising log D(G(z))
(--loss=non_saturating). The paper's MNIST networks: G with two 1200-unit ReLU
layers (--generator=mlp), D with two 240-unit, 5-piece maxout layers and dropout
(--discriminator=mlp_maxout). --real_label=0.9 is one-sided label smoothing
(Salimans et al., 2016), --latent_dist=uniform the seed's z ~ U(-1, 1)^100.

Writes metrics.jsonl, checkpoints (rerunning resumes), sample grids from a fixed
z and real-vs-fake pixel histograms under samples/, loss_curves.png, and at the
end eval.json (pixel-space Frechet distance, precision/recall, class coverage by
nearest neighbour). experiments/explore.py then draws latent walks and vector
arithmetic from the checkpoint.
"""

from __future__ import annotations

import image_gan
import launch

image_gan.define_flags(generator="mlp", discriminator="mlp_maxout", default_steps=20000, default_batch=100)

NAME = "gan"


def main(argv):
  del argv
  image_gan.train(NAME)


if __name__ == "__main__":
  launch.run(main)
