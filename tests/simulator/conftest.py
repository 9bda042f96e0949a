"""The process fixtures of tests/processes, for the simulator's end-to-end tests."""

from tests.processes.conftest import processes, quiet_queue  # noqa: F401 (fixtures)
