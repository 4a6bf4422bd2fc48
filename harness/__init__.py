"""What the tests and the benchmarks share, and neither owns: a real ``python -m service`` on
127.0.0.1 (``live_server`` for the tests, ``live_service`` with its load generator and workload),
a store changed as an export, or an accident, would (``store_faults``), the reliability figures
(``reliability``) and the device the service runs here (``devices``)."""
