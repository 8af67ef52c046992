"""distilloop active_learning package."""
