"""Business Central API v2.0 stand-in: one environment with one company.

`schema` declares the entity types and coerces bodies, `records` the shared checks and errors,
`master_data` customers, items and reference tables, `company` sales invoices on top of them;
`protocol` is the API's answers and errors, `pages` its OData collections and entities, `service`
the routes.
"""

from sandbox.business_central.company import CompanyStore
from sandbox.business_central.service import BusinessCentralService

__all__ = ["BusinessCentralService", "CompanyStore"]
