"""Worker side: the Celery app, its thin tasks, the plain functions behind them, and the
scheduler's leaders (dispatcher and timers)."""
