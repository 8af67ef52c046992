"""The bottom layer: settings, head definitions and the vocabulary every other package shares.

Nothing here imports another distilloop package (``lint-imports`` checks it).
"""
