"""Contract tests of the ports (`shared/services/ports.py`), one module per port.

Each module holds a `...Contract` class of tests written against the port alone. A subclass named
`Test...` supplies the implementation through a fixture: `tests/unit` runs each contract against
the in-memory fake (`tests/unit/fakes.py`), `tests/integration` against the real adapter on
Azurite. So a fake cannot drift from the adapter it stands in for: both pass the same tests.
"""
