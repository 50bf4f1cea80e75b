"""Evaluation of the detectors: NAB (`nab`) and simulated territories (`scenario`)."""
