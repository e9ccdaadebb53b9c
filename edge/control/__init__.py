"""Pure decisions over snapshots: authorization, load allocation."""
