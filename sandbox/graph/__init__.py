"""Microsoft Graph Bookings v1.0 stand-in.

`appointments` holds the records and the rules of their fields, `store` all Bookings data of the
tenant, `service` the HTTP face (routes, paging, Graph's error body, mailbox throttling).
"""

from sandbox.graph.appointments import Appointment, AppointmentError, Business, exchange_id
from sandbox.graph.service import GraphService
from sandbox.graph.store import BookingsStore

__all__ = ["Appointment", "AppointmentError", "BookingsStore", "Business", "GraphService", "exchange_id"]
