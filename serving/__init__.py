"""Serving the distilled students in production.

- :mod:`serving.node`: a drop-in LangGraph node (``make_classifier_node``) writing the workflow's
  ``unified_classification``.
- :mod:`serving.cascade`: the student answers when it is confident enough, otherwise the LLM does.
- :mod:`serving.calibration`: chooses the cascade threshold on the holdout for a target accuracy.
- :mod:`serving.shadow`: shadow mode / A/B logging through a bounded queue and a background writer.
- :mod:`serving.ingest`: logged production traffic flows back into the pool and the labelling queue.
- :mod:`serving.monitoring`: disagreement rate, cascade coverage, drift alert, break-even analysis.
- :mod:`serving.retrain`: the per-head retraining policy and the command that runs a round.

Nothing is imported or loaded here: import the submodule you need.
"""
