"""Processors: clean, dead-letter, featurize and join labels. The pure functions here are
shared with serving; ``processors.app`` runs them on faust."""

from processors.clean import REASONS, Clean, Cleaner, Rejection

__all__ = ["Cleaner", "Clean", "Rejection", "REASONS"]
