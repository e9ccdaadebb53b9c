"""Site meters over Modbus."""
