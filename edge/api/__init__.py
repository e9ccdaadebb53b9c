"""The local HTTP API and its client."""
