"""Orders: a CRUD resource whose source of truth is an event store (:mod:`eventstore`).

- :mod:`orders.schema`: what a client may send (strict, every bad field named).
- :mod:`orders.aggregate`: the events, the fold and the state machine.
- :mod:`orders.idempotency`: Idempotency-Key records.
- :mod:`orders.api`: the HTTP routes (the functions ``Orders``, ``Order``, ``OrderEvents``).
"""
