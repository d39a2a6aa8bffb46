"""Segmentation networks by name; see ``registry`` for the list and their options."""

from atso.models.registry import available_models, build_model, count_parameters

__all__ = ["available_models", "build_model", "count_parameters"]
