"""distilloop training package."""
