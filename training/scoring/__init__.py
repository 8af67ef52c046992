"""Scoring the whole pool with a model version, stored as Prediction rows: ``distilloop score``.

``service.score_head`` is the entry point; ``local.py`` streams the pool through one process, ``ray_engine.py``
spreads it over a Ray cluster with Ray Data. ``training.predictions.stored_pool_probs`` is how the rest of distilloop
(active-learning rounds, the dashboard, ``retrain``) reuses the stored predictions when they are current."""
