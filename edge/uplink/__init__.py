"""Delivery of the outbox to the operator's cloud."""
