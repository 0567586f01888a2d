"""History store adapters (the durable spool)."""
