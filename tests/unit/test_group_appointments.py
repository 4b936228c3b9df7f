"""Group appointments: the contract's key formula, one booking per attendee, and the sync's
treatment of an attendee who leaves (cancelled, without a point read of the appointment)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from datetime import timedelta

from shared.domain.group_appointments import attendee_id, bookings_of, is_group
from shared.domain.models import BookingStatus, Customer, booking_key
from tests.unit.builders import LUNCH, appointment_id, make_appointment, make_booking
from tests.unit.test_booking_sync import LOOKBACK_DAYS, NOW
from tests.unit.wiring import fake_app


def contract_key(text: str) -> str:
    """CONTRACT.md, Storage: base32 (RFC 4648) of SHA-256, cut to 26 characters."""
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:26]


def attendee(number: int, *, customer_id: str | None = None, email: str | None = None) -> Customer:
    return Customer(
        name=f"Attendee {number}",
        email=email if email is not None else f"Attendee{number}@Example.com",
        bookings_customer_id=customer_id if customer_id is not None else f"cust-{number}",
    )


def group(number: int = 1, *attendees: Customer, maximum: int | None = 8):  # type: ignore[no-untyped-def]
    return make_appointment(
        LUNCH,
        number,
        customer=attendees[0] if attendees else None,
        attendees=attendees,
        maximum_attendees=maximum,
    )


def test_the_key_formulas_are_the_contracts() -> None:
    assert booking_key("biz@x.com", "AAMk/+=") == contract_key("biz@x.com\nAAMk/+=")
    assert booking_key("biz@x.com", "AAMk/+=", "cust-1") == contract_key("biz@x.com\nAAMk/+=\ncust-1")
    assert booking_key("biz@x.com", "AAMk/+=", "cust-1") != booking_key("biz@x.com", "AAMk/+=")


def test_attendee_id_is_the_customer_id_else_the_lower_cased_email() -> None:
    assert attendee_id(attendee(1)) == "cust-1"
    assert attendee_id(attendee(1, customer_id="")) == "attendee1@example.com"
    assert attendee_id(Customer(name="Walk-in", email=None)) is None


def test_a_group_appointment_is_one_booking_per_attendee_at_the_appointments_price() -> None:
    people = [attendee(n) for n in range(1, 6)]
    appointment = group(1, *people)
    units = bookings_of(appointment)
    assert [u.customer for u in units] == people
    assert [u.key for u in units] == [booking_key(LUNCH, appointment_id(1), f"cust-{n}") for n in range(1, 6)]
    assert all(u.group and u.price == appointment.price and u.id == appointment.id for u in units)


def test_one_to_one_appointments_keep_todays_key() -> None:
    appointment = make_appointment(LUNCH, 1, maximum_attendees=1)
    (unit,) = bookings_of(appointment)
    assert unit.key == booking_key(LUNCH, appointment_id(1)) and not unit.group
    assert not is_group(make_appointment(LUNCH, 1))  # maximumAttendeesCount absent, one customer


def test_a_second_customer_on_a_count_of_one_is_billed_too() -> None:
    # CONTRACT.md: a group appointment is `maximumAttendeesCount` > 1 *or* more than one entry in
    # `customers`; the calendarView example on Learn carries no `maximumAttendeesCount` at all.
    units = bookings_of(group(1, attendee(1), attendee(2), maximum=1))
    assert [u.attendee_id for u in units] == ["cust-1", "cust-2"] and all(u.group for u in units)
    assert not is_group(group(2, attendee(1), maximum=1))


def test_robust_shapes_of_group_appointments() -> None:
    # maximumAttendeesCount absent but several attendees: a group all the same.
    assert is_group(group(1, attendee(1), attendee(2), maximum=None))
    # No attendee: one booking without customer, under the one-to-one key, shown as NO_CUSTOMER later.
    (empty,) = bookings_of(group(2))
    assert (empty.customer, empty.key, empty.group) == (None, booking_key(LUNCH, appointment_id(2)), True)
    # The same attendee twice is billed once; an attendee with no id and no email cannot be keyed.
    units = bookings_of(group(3, attendee(1), attendee(1), Customer(name="Walk-in", email=None)))
    assert [u.attendee_id for u in units] == ["cust-1"]


class World:
    """The sync as production wires it (`tests/unit/wiring.py`), for the business LUNCH."""

    def __init__(self) -> None:
        app = fake_app(NOW, BOOKINGS_BUSINESS_IDS=LUNCH, SYNC_LOOKBACK_DAYS=str(LOOKBACK_DAYS))
        self.clock, self.store, self.graph = app.clock, app.store, app.graph
        self.sync = app.container.booking_sync

    def statuses(self) -> dict[str, BookingStatus]:
        return {b.customer_email or "": b.status for b in self.store.all()}


def test_an_attendee_who_leaves_is_cancelled_without_reading_the_appointment_again() -> None:
    world = World()
    people = [attendee(n) for n in range(1, 6)]
    world.graph.add(group(1, *people))
    world.sync.run()
    assert len(world.store.all()) == 5 and all(b.group_appointment for b in world.store.all())

    world.graph.add(group(1, *people[:2], *people[3:]))  # attendee 3 cancels their seat
    world.clock.advance(minutes=15)
    (result,) = world.sync.run().results
    assert result.counts()["cancelled"] == 1
    assert world.statuses()["Attendee3@Example.com"] is BookingStatus.CANCELLED
    assert sum(s is BookingStatus.UNBILLED for s in world.statuses().values()) == 4
    assert world.graph.point_reads == []  # the appointment was just read: nothing to confirm


def test_a_group_appointment_that_moved_out_of_the_window_keeps_its_attendees() -> None:
    world = World()
    people = [attendee(n) for n in range(1, 4)]
    world.graph.add(group(1, *people))
    world.sync.run()
    long_ago = NOW - timedelta(days=LOOKBACK_DAYS + 30)
    world.graph.add(replace(group(1, *people[:2]), start=long_ago, end=long_ago + timedelta(minutes=45)))
    world.clock.advance(minutes=15)
    world.sync.run()
    # Out of the window: read by id; attendees 1 and 2 are still in it, attendee 3 is not.
    assert len(world.graph.point_reads) == 3
    statuses = world.statuses()
    assert statuses["Attendee3@Example.com"] is BookingStatus.CANCELLED
    assert statuses["Attendee1@Example.com"] is statuses["Attendee2@Example.com"] is BookingStatus.UNBILLED


def test_an_unreadable_group_appointment_cancels_none_of_its_attendees() -> None:
    world = World()
    world.graph.add(group(1, attendee(1), attendee(2)))
    world.sync.run()
    world.graph.remove(LUNCH, appointment_id(1))
    world.graph.add_invalid(LUNCH, appointment_id(1), "unknown time zone 'Mars Standard Time'")
    world.clock.advance(minutes=15)
    (result,) = world.sync.run().results
    assert result.counts()["cancelled"] == 0 and result.invalid == 1
    assert set(world.statuses().values()) == {BookingStatus.UNBILLED}


def test_a_legacy_booking_invoicing_touched_keeps_standing_for_its_attendee() -> None:
    """Before group appointments were understood, only the first attendee was stored, under the
    one-to-one key. If that booking was invoiced, the attendee must not get a second booking."""
    world = World()
    people = [attendee(n) for n in range(1, 4)]
    legacy = replace(
        make_booking(LUNCH, 1, status=BookingStatus.INVOICED, invoice_number="S-INV-OLD"),
        customer_email="attendee1@example.com",
    )
    world.store.put(legacy)
    world.graph.add(group(1, *people))
    world.sync.run()
    rows = {b.customer_email.lower(): b for b in world.store.all() if b.customer_email}
    assert rows["attendee1@example.com"].key == legacy.key  # still the one booking for attendee 1
    assert rows["attendee1@example.com"].status is BookingStatus.INVOICED
    assert len(world.store.all()) == 3  # attendees 2 and 3 got their own, attendee 1 no second one


def test_an_unbilled_legacy_booking_is_retired_and_every_attendee_gets_their_own() -> None:
    world = World()
    people = [attendee(n) for n in range(1, 4)]
    legacy = replace(make_booking(LUNCH, 1), customer_email="attendee1@example.com")
    world.store.put(legacy)
    world.graph.add(group(1, *people))
    world.sync.run()
    assert world.store.get(LUNCH, legacy.key).status is BookingStatus.CANCELLED  # type: ignore[union-attr]
    unbilled = [b for b in world.store.all() if b.status is BookingStatus.UNBILLED]
    assert sorted(b.customer_email for b in unbilled) == [p.email for p in people]


def test_a_one_to_one_booking_in_invoicings_hands_is_never_mistaken_for_a_legacy_row() -> None:
    """The legacy rule applies to group appointments only: a Failed one-to-one booking is refreshed."""
    world = World()
    appointment = make_appointment(LUNCH, 1)
    world.store.put(make_booking(LUNCH, 1, status=BookingStatus.FAILED, error_code="BC_REJECTED"))
    world.graph.add(replace(appointment, service_name="Renamed"))
    world.sync.run()
    (only,) = world.store.all()
    assert (only.status, only.service_name) == (BookingStatus.FAILED, "Renamed")
