"""Runtime tools every layer may use: devices, torchrun processes, determinism, fault injection."""
