"""Simulated chargers and meters for demos and tests."""
