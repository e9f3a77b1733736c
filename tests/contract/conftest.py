"""The contract tests share the simulator tests' `sim` fixture (a loopback simulator per
module, reset before each test)."""

from tests.simulator.helpers import sim, sim_url  # noqa: F401
