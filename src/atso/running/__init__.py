"""Executing plans: the run directory, its manifest, jobs, resume."""
