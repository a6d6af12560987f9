"""Noise models and what they are sampled and scored with: a trained SeNM-VAE as a noise model (``model``), its
degradation levels (``levels``, ``level_estimate``) and per-image seeds (``seeds``), its temperature fit
(``calibration``), the fitted baselines it must beat (``baselines``), the scores (``scoring``) and the simulated camera
of the demo and the tests (``camera``)."""
