"""`LinkRepository`: links to Business Central records and the markers that let one worker create one."""

from __future__ import annotations

from shared.domain.bc_records import Link
from shared.services.ports import LinkRepository


class LinkRepositoryContract:
    """Subclasses provide a `links` fixture: an empty link store."""

    def test_a_marker_is_claimed_once_and_taken_over_only_by_etag(self, links: LinkRepository) -> None:
        etag = links.claim("customer", "a@x.com", "worker-1")
        assert etag is not None and links.claim("customer", "a@x.com", "worker-2") is None
        row = links.get("customer", "a@x.com")
        assert row is not None and (row.owner, row.link) == ("worker-1", None)
        assert links.take_over(row, "worker-2") is not None
        assert links.take_over(row, "worker-3") is None  # read before worker-2 took it
        links.release("customer", "a@x.com", etag)  # no longer worker-1's: kept
        assert links.get("customer", "a@x.com") is not None

    def test_a_link_is_recorded_read_and_forgotten(self, links: LinkRepository) -> None:
        assert links.link_of("item", "svc-1") is None and links.get("item", "svc-1") is None
        links.record("item", "svc-1", Link("id-1", "SVC-0001"))
        assert links.link_of("item", "svc-1") == Link("id-1", "SVC-0001")
        links.record("item", "svc-1", Link("id-2", "SVC-0002"))  # last writer wins
        assert links.link_of("item", "svc-1") == Link("id-2", "SVC-0002")
        assert links.claim("item", "svc-1", "worker-1") is None  # a linked row is not claimable
        links.forget("item", "svc-1")
        links.forget("item", "svc-1")  # forgetting twice is fine
        assert links.link_of("item", "svc-1") is None

    def test_releasing_its_own_marker_frees_the_key(self, links: LinkRepository) -> None:
        etag = links.claim("customer", "b@x.com", "worker-1")
        assert etag is not None
        links.release("customer", "b@x.com", etag)
        assert links.get("customer", "b@x.com") is None
        assert links.claim("customer", "b@x.com", "worker-2") is not None
