"""Input pipelines: 2-D mixtures, TFDS data sources with grain, local images."""
