"""Monitoring: disagreement rate and cascade coverage over time, drift alert, break-even, retraining."""

from app import ui
from serving.dashboard_panel import render_monitoring

render_monitoring(session_factory=ui.session)
