"""Test support: real services started by the suite (PostgreSQL, …)."""
