"""Flax generator, discriminator and critic networks, one file per GAN family."""
