"""distilloop app package."""
