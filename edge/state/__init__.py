"""The live registry of stations, connectors and sessions."""
