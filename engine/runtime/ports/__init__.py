"""Protocols the runtime depends on; adapters implement them, bootstrap wires them."""
