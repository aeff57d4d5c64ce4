"""News sources: feeds, sitemaps and pages the service follows (refresh.py), their registry (registry.py) and the
background scheduler of a running server (scheduler.py). docs/sources.md tells the whole story."""

from qa_service.sources.refresh import Sources
from qa_service.sources.scheduler import Scheduler

__all__ = ["Scheduler", "Sources"]
