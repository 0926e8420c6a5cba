"""Stand-ins for services the tests cannot reach (Modal's servers)."""
