"""All Bookings data of the tenant: businesses and their appointments, listed by time window."""

from __future__ import annotations

import bisect
import copy
import random
import threading
from datetime import datetime
from typing import Any

from sandbox.core.clock import Clock
from sandbox.core.timefmt import (
    graph_datetime,
    iso_duration,
)
from sandbox.graph.appointments import (
    Appointment,
    AppointmentError,
    Business,
    apply_fields,
    empty_location,
    exchange_id,
    given_zone,
    parse_dtz,
    reject_unknown,
    render_dtz,
)


class BookingsStore:
    """All Bookings data of the tenant, guarded by one lock (requests run on many threads)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self._businesses: dict[str, Business] = {}

    def clear(self) -> None:
        with self.lock:
            self._businesses.clear()

    def add_business(self, business: Business) -> None:
        with self.lock:
            self._businesses[business.id.lower()] = business

    def business(self, business_id: str) -> Business | None:
        # Mailbox SMTP addresses are case-insensitive.
        with self.lock:
            return self._businesses.get(business_id.strip().lower())

    def businesses(self) -> list[Business]:
        with self.lock:
            return list(self._businesses.values())

    # -- reading --------------------------------------------------------------------------------

    def window(
        self,
        business: Business,
        start: datetime | None,
        end: datetime | None,
        after: tuple[datetime, str] | None,
        limit: int,
        *,
        count: bool = False,
    ) -> tuple[list[dict[str, Any]], tuple[datetime, str] | None, int | None]:
        """Appointments overlapping [start, end) ordered by (start, id), after a keyset position.

        Returns (rendered page, key of the last item if more follow, total matches if `count`).
        Keyset paging keeps pages stable while appointments are added or cancelled in between.
        """
        with self.lock:
            keys = business.ordered_keys()
            lower = 0 if start is None else bisect.bisect_left(keys, (start - business.max_duration, ""))
            total = self._count(business, keys, lower, start, end) if count else None
            if after is not None:
                lower = max(lower, bisect.bisect_right(keys, after))
            page: list[Appointment] = []
            more = False
            for index in range(lower, len(keys)):
                key = keys[index]
                if end is not None and key[0] >= end:
                    break
                appointment = business.appointments[key[1]]
                if start is not None and appointment.end <= start:
                    continue
                if len(page) == limit:
                    more = True
                    break
                page.append(appointment)
            return [self.render(a) for a in page], (page[-1].sort_key if more else None), total

    @staticmethod
    def _count(
        business: Business,
        keys: list[tuple[datetime, str]],
        lower: int,
        start: datetime | None,
        end: datetime | None,
    ) -> int:
        total = 0
        for index in range(lower, len(keys)):
            key = keys[index]
            if end is not None and key[0] >= end:
                break
            if start is None or business.appointments[key[1]].end > start:
                total += 1
        return total

    def appointment(self, business: Business, appointment_id: str) -> dict[str, Any] | None:
        with self.lock:
            found = business.appointments.get(appointment_id)
            return self.render(found) if found else None

    def render(self, appointment: Appointment) -> dict[str, Any]:
        """The v1.0 JSON of an appointment."""
        fields = appointment.fields
        customers = copy.deepcopy(fields.get("customers", []))
        result: dict[str, Any] = {
            "id": appointment.id,
            "selfServiceAppointmentId": fields.get("selfServiceAppointmentId"),
            "additionalInformation": fields.get("additionalInformation", ""),
            "isLocationOnline": fields.get("isLocationOnline", False),
            "joinWebUrl": fields.get("joinWebUrl"),
            "anonymousJoinWebUrl": fields.get("anonymousJoinWebUrl"),
            "appointmentLabel": fields.get("appointmentLabel", ""),
            "customerTimeZone": fields.get("customerTimeZone"),
            "serviceId": fields.get("serviceId"),
            "serviceName": fields.get("serviceName", ""),
            "serviceNotes": fields.get("serviceNotes"),
            "duration": iso_duration(appointment.end - appointment.start),
            "preBuffer": fields.get("preBuffer", "PT0S"),
            "postBuffer": fields.get("postBuffer", "PT0S"),
            "priceType": fields.get("priceType", "notSet"),
            "price": fields.get("price", 0.0),
            "optOutOfCustomerEmail": fields.get("optOutOfCustomerEmail", False),
            "smsNotificationsEnabled": fields.get("smsNotificationsEnabled", False),
            "isCustomerAllowedToManageBooking": fields.get("isCustomerAllowedToManageBooking", True),
            "maximumAttendeesCount": fields.get("maximumAttendeesCount", 1),
            "filledAttendeesCount": len(customers),
            "staffMemberIds": list(fields.get("staffMemberIds", [])),
            "createdDateTime": fields.get("createdDateTime"),
            "lastUpdatedDateTime": fields.get("lastUpdatedDateTime"),
            "startDateTime": render_dtz(appointment.start, appointment.time_zone),
            "endDateTime": render_dtz(appointment.end, appointment.time_zone),
            "serviceLocation": copy.deepcopy(fields.get("serviceLocation", empty_location())),
            "reminders": copy.deepcopy(fields.get("reminders", [])),
            "customers": customers,
            # Flat customer fields of the v1.0 schema; set only on appointments that carry them.
            "customerName": fields.get("customerName"),
            "customerEmailAddress": fields.get("customerEmailAddress"),
            "customerPhone": fields.get("customerPhone"),
            "customerNotes": fields.get("customerNotes"),
        }
        for key, value in fields.items():
            if key not in result:
                result[key] = copy.deepcopy(value)
        return result

    # -- writing --------------------------------------------------------------------------------

    def create(
        self, business: Business, data: dict[str, Any], *, strict: bool, rng: random.Random | None = None
    ) -> dict[str, Any]:
        """Create an appointment; `strict` applies the real API's rules, admin calls relax them."""
        with self.lock:
            appointment = self.build(business, data, strict=strict, rng=rng)
            business.add(appointment)
            return self.render(appointment)

    def build(
        self, business: Business, data: dict[str, Any], *, strict: bool, rng: random.Random | None = None
    ) -> Appointment:
        if not isinstance(data, dict):
            raise AppointmentError("The request body must be a JSON object.", code="BadRequest")
        if strict:
            reject_unknown(data)
        if "startDateTime" not in data or "endDateTime" not in data:
            raise AppointmentError("startDateTime and endDateTime are required.")
        start = parse_dtz(data["startDateTime"], "startDateTime")
        end = parse_dtz(data["endDateTime"], "endDateTime")
        if end < start:
            raise AppointmentError("The end time of the appointment must be after its start time.")
        service_id = data.get("serviceId")
        service = business.services.get(str(service_id)) if service_id else None
        if strict and service is None:
            raise AppointmentError(
                f"The service with id '{service_id}' was not found.", 400, "invalidRequest"
            )
        now = graph_datetime(self.clock.now())
        fields: dict[str, Any] = {
            "selfServiceAppointmentId": f"{(rng or random.Random()).getrandbits(48):012X}",
            "additionalInformation": "",
            "isLocationOnline": bool(service.get("isLocationOnline")) if service else False,
            "customerTimeZone": None,
            "serviceId": service_id,
            "serviceName": service.get("displayName", "") if service else "",
            "serviceNotes": None,
            "preBuffer": service.get("preBuffer", "PT0S") if service else "PT0S",
            "postBuffer": service.get("postBuffer", "PT0S") if service else "PT0S",
            "priceType": service.get("defaultPriceType", "notSet") if service else "notSet",
            "price": service.get("defaultPrice", 0.0) if service else 0.0,
            "staffMemberIds": [],
            "customers": [],
            "createdDateTime": now,
            "lastUpdatedDateTime": now,
        }
        apply_fields(fields, data, strict=strict)
        appointment_id = str(data.get("id") or "") if not strict else ""
        return Appointment(
            id=appointment_id or exchange_id(rng),
            start=start,
            end=end,
            fields=fields,
            time_zone=None if strict else given_zone(data["startDateTime"]),
        )

    def update(
        self, business: Business, appointment_id: str, data: dict[str, Any], *, strict: bool
    ) -> dict[str, Any]:
        with self.lock:
            appointment = business.appointments.get(appointment_id)
            if appointment is None:
                raise AppointmentError(
                    "The specified object was not found in the store.", 404, "itemNotFound"
                )
            if not isinstance(data, dict):
                raise AppointmentError("The request body must be a JSON object.", code="BadRequest")
            if strict:
                reject_unknown(data)
            start = (
                parse_dtz(data["startDateTime"], "startDateTime")
                if "startDateTime" in data
                else appointment.start
            )
            end = parse_dtz(data["endDateTime"], "endDateTime") if "endDateTime" in data else appointment.end
            if end < start:
                raise AppointmentError("The end time of the appointment must be after its start time.")
            fields = dict(appointment.fields)
            apply_fields(fields, data, strict=strict)
            fields["lastUpdatedDateTime"] = graph_datetime(self.clock.now())
            business.remove(appointment_id)
            time_zone = appointment.time_zone
            if not strict and "startDateTime" in data:
                time_zone = given_zone(data["startDateTime"])
            updated = Appointment(id=appointment.id, start=start, end=end, fields=fields, time_zone=time_zone)
            business.add(updated)
            return self.render(updated)

    def cancel(self, business: Business, appointment_id: str) -> bool:
        with self.lock:
            return business.remove(appointment_id) is not None

    def dump(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {
                    "id": business.id,
                    "business": copy.deepcopy(business.fields),
                    "services": copy.deepcopy(list(business.services.values())),
                    "customers": copy.deepcopy(list(business.customers.values())),
                    "staffMembers": copy.deepcopy(list(business.staff.values())),
                    "appointments": [
                        self.render(business.appointments[key[1]]) for key in business.ordered_keys()
                    ],
                }
                for business in self._businesses.values()
            ]
