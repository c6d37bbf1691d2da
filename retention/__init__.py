"""Retention cleanup of Cosmos DB: used by CleanupTimer and the benchmark. docs/cleanup.md has the rules::

    report = await run_cleanup(cfg=settings.cleanup_settings(), log=log, container=container)
"""

from retention.cleanup import (
    CleanupFailed,
    CleanupReport,
    delete_expired_records,
    expired_items_query,
    expiry_cutoff,
    read_instant,
    run_cleanup,
    time_budget,
)

__all__ = ["CleanupFailed", "CleanupReport", "delete_expired_records", "expired_items_query", "expiry_cutoff",
           "read_instant", "run_cleanup", "time_budget"]
