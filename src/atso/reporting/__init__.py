"""Human-readable tables of a run's metrics."""
