"""Noise models that are not networks: the simulated sRGB camera of the demo and the fidelity benchmark's tests."""
