"""distilloop labeling package."""
