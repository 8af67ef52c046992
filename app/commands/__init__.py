"""CLI command modules. Each defines ``register(cli: typer.Typer)`` and keeps no business logic."""
