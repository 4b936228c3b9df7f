"""`SyncStateRepository`: the per-business watermark of the sync, which only moves forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.services.ports import SyncStateRepository

LUNCH = "lunch@contoso.com"
READ_TO = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)


class SyncStateContract:
    """Subclasses provide a `sync_state` fixture: an empty sync state store."""

    def test_a_business_never_synced_has_no_watermark(self, sync_state: SyncStateRepository) -> None:
        status = sync_state.get(LUNCH)
        assert (status.business_id, status.fully_read_to, status.last_outcome) == (LUNCH, None, None)

    def test_the_watermark_only_moves_forward(self, sync_state: SyncStateRepository) -> None:
        sync_state.record_success(LUNCH, READ_TO, {"read": 3, "new": 2})
        sync_state.record_success(LUNCH, READ_TO - timedelta(hours=1), {"read": 1})  # a slow, older run
        status = sync_state.get(LUNCH)
        assert status.fully_read_to == READ_TO and status.last_outcome == "succeeded"
        assert status.last_counts["read"] == 1  # the last run's counts, whatever its window
        sync_state.record_success(LUNCH, READ_TO + timedelta(hours=1), {})
        assert sync_state.get(LUNCH).fully_read_to == READ_TO + timedelta(hours=1)

    def test_a_failure_is_recorded_and_keeps_the_watermark(self, sync_state: SyncStateRepository) -> None:
        sync_state.record_success(LUNCH, READ_TO, {"read": 1})
        sync_state.record_failure(LUNCH, "Graph answered 403")
        failed = sync_state.get(LUNCH)
        assert (failed.fully_read_to, failed.last_outcome, failed.last_error) == (
            READ_TO,
            "failed",
            "Graph answered 403",
        )
        sync_state.record_success(LUNCH, READ_TO, {})
        recovered = sync_state.get(LUNCH)
        assert recovered.last_outcome == "succeeded" and not recovered.last_error
        assert sync_state.get("dinner@contoso.com").fully_read_to is None  # per business
