# Team-owned: team-value edits this file; template updates (cruft update) skip it.
"""Turns value-model requests into value models."""

__version__ = "0.1.0"
