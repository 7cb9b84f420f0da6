"""Turns value-model requests into value models."""

__version__ = "0.1.0"
