r"""Convolutional GANs on images: Radford et al.'s DCGAN and the seed's Keras MNIST "DCGAN".

  python experiments/dcgan.py --flagfile=experiments/flags/dcgan_digits.flags --workdir=/tmp/dcgan_digits

--generator/--discriminator=dcgan: Radford, Metz & Chintala, "Unsupervised
Representation Learning with Deep Convolutional Generative Adversarial
Networks", ICLR 2016 (strided and fractionally strided 4x4 convolutions,
BatchNorm, ReLU / LeakyReLU(0.2), Adam lr 2e-4 beta1 0.5, batch 128, N(0, 0.02)
weights). --generator/--discriminator=dcgan_mnist: the Keras model of seed 000
(dense projection, up-sampling + 5x5 convolutions in G; 5x5 convolutions, max
pooling and dropout in D) trained as the seed does with
experiments/flags/dcgan_mnist.flags: z ~ U(-1, 1)^100, real label 0.9, Adam
2e-4 / 0.5, batch 128, 1 D step and 5 G steps per iteration.

The same options as experiments/gan.py (loss, label smoothing, D/G step
counts, latent distribution, EMA, Adam and its schedule, dataset); the widths
of both networks are set with --g_widths / --d_widths. Writes metrics.jsonl,
checkpoints (rerunning resumes), sample grids from a fixed z and real-vs-fake
pixel histograms under samples/, loss_curves.png and eval.json.
"""

from __future__ import annotations

import image_gan
import launch

image_gan.define_flags(generator="dcgan", discriminator="dcgan", default_steps=20000, default_batch=128)

NAME = "dcgan"


def main(argv):
  del argv
  image_gan.train(NAME)


if __name__ == "__main__":
  launch.run(main)
