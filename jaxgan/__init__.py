"""jaxgan: generative adversarial networks in pure JAX."""
