"""Release signals in: what the release targets say about the releases mlreactor queued (hooks, reconciler)."""
