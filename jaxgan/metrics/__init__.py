"""Evaluation metrics for GANs."""
