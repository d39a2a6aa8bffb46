"""atso: semi-supervised semantic segmentation by Asynchronous Teacher-Student Optimization."""

__version__ = "0.1.0"
