"""The LAN side: OCPP-J server, framing, per-version handlers, outbound commands."""
