"""Composition root: config to running objects."""
