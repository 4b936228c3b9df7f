"""Group appointments: one booking per attendee.

A Bookings service with `maximumAttendeesCount` > 1 (a class, a workshop) books several customers
into one appointment, and so does any appointment with more than one entry in `customers` (the
calendarView example on Learn, `graph/api/bookingbusiness-list-calendarview`, carries no
`maximumAttendeesCount` at all, and a second customer on a count of 1 must still be billed).
`customers` is a collection (`Collection(bookingCustomerInformationBase)` in the Graph v1.0 CSDL,
`microsoftgraph/msgraph-metadata` `schemas/v1.0-Prod.csdl`; the appointment carries
`maximumAttendeesCount` and `filledAttendeesCount`). Each attendee is billed on its own:

- a group appointment becomes one booking per attendee, keyed by
  `booking_key(businessId, appointmentId, attendeeId)`, where `attendeeId` is the attendee's
  `customerId`, or its lower-cased `emailAddress` when that is empty (the contract's formula);
  each is billed the appointment's price, to its own customer;
- a one-to-one appointment keeps its key (`booking_key(businessId, appointmentId)`), so bookings
  stored before group appointments were understood stay where they are;
- an attendee who leaves is like an appointment that is gone: its Unbilled booking is cancelled
  (the sync sees the appointment without that attendee; `booking_sync`);
- a booking stored before group appointments were understood (one row under the one-to-one key,
  for the first attendee only) that invoicing already touched (Queued, Invoicing, Invoiced, Failed)
  keeps standing for that attendee: no per-attendee booking is made for them, so they can never be
  billed twice (`without_legacy_attendee`). An Unbilled one is retired by the sync like any
  booking that is gone, and every attendee gets their own booking.

Robust to what no source settles:

- `maximumAttendeesCount` absent or 1 (an older or trimmed payload): several attendees make it a group;
- a group appointment with no attendee at all keeps one booking under the one-to-one key, without
  a customer, so a person sees it (`NO_CUSTOMER`) instead of it vanishing silently;
- an attendee with neither `customerId` nor email cannot be keyed (two of them would collide); it is
  left out and reported by `unkeyed_attendees`.
"""

from __future__ import annotations

from dataclasses import replace

from shared.domain import lifecycle
from shared.domain.models import Appointment, Booking, Customer


def is_group(appointment: Appointment) -> bool:
    """A group appointment: `maximumAttendeesCount` > 1, or more than one entry in `customers`."""
    if appointment.maximum_attendees is not None and appointment.maximum_attendees > 1:
        return True
    return len(appointment.attendees) > 1


def attendee_id(customer: Customer) -> str | None:
    """The contract's `attendeeId`: the `customerId`, else the lower-cased email, else None."""
    if customer.bookings_customer_id and customer.bookings_customer_id.strip():
        return customer.bookings_customer_id.strip()
    if customer.email and customer.email.strip():
        return customer.email.strip().lower()
    return None


def bookings_of(appointment: Appointment) -> tuple[Appointment, ...]:
    """The appointment as its bookings see it: itself (one-to-one), or one per attendee (group)."""
    if not is_group(appointment):
        return (appointment,)
    if not appointment.attendees:
        return (replace(appointment, group=True),)
    units: dict[str, Appointment] = {}
    for attendee in appointment.attendees:
        identity = attendee_id(attendee)
        if identity is None or identity in units:
            continue  # the same attendee twice is billed once
        units[identity] = replace(appointment, customer=attendee, attendee_id=identity, group=True)
    return tuple(units.values())


def unkeyed_attendees(appointment: Appointment) -> int:
    """Attendees of a group appointment that `bookings_of` had to leave out (no id, no email)."""
    if not is_group(appointment):
        return 0
    return sum(1 for attendee in appointment.attendees if attendee_id(attendee) is None)


def without_legacy_attendee(
    units: tuple[Appointment, ...], legacy: Booking | None
) -> tuple[Appointment, ...]:
    """The attendees' bookings minus the one a legacy one-to-one-key booking already stands for.

    `legacy` is the stored booking under the appointment's one-to-one key. Once invoicing has
    touched it (the sync can neither cancel nor revive it), it is that attendee's booking: making a
    second one would bill them twice. Its attendee is recognised by email, case-insensitively.
    """
    if legacy is None or lifecycle.sync_may_cancel(legacy.status) or lifecycle.sync_may_revive(legacy.status):
        return units
    email = (legacy.customer_email or "").strip().lower()
    if not email:
        return units
    return tuple(
        unit
        for unit in units
        # A unit under the legacy key itself (a one-to-one appointment, a class without attendees)
        # is that booking: never dropped.
        if unit.key == legacy.key
        or not (unit.customer and (unit.customer.email or "").strip().lower() == email)
    )
