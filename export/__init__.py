"""distilloop export package."""
