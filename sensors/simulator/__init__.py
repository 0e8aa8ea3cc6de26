"""The telemetry simulator: the live demo's devices and the benchmark's load generator.

Python API (the benchmark calls these; ``manage.py simulate`` is a thin shell around them)::

    from sensors.simulator import SimConfig, acked_readings, run_simulation, synthetic_devices, site_for

    devices = synthetic_devices(1000, keys=catalogue_keys(10), site=site_for(farm_slug="bench"),
                                farm_slug="bench", shape="native", allow_seconds=False)
    summary = run_simulation(SimConfig(url=..., devices=devices, rate=2000, duration=60, clients=4, track=True))
    expected = acked_readings(summary)  # {(uid, metric, ts)} the broker acknowledged

Modules: ``physics`` (pure signal models), ``devices`` (who publishes how),
``payloads`` (native, ChirpStack v4 and The Things Stack v3 shapes),
``malformed`` (bad input on purpose), ``mqtt`` (K clients, PUBACK accounting),
``runner`` (schedules and rates), ``registry`` (the database side: import it
explicitly; the rest needs no Django).
"""

from sensors.simulator.devices import (
    SHAPE_CHOICES,
    Shape,
    SimDevice,
    build_device,
    catalogue_keys,
    site_for,
    synthetic_devices,
)
from sensors.simulator.malformed import MALFORMED_KINDS
from sensors.simulator.runner import Excursion, SimConfig, Summary, acked_readings, devices_summary, run_simulation

__all__ = [
    "MALFORMED_KINDS",
    "SHAPE_CHOICES",
    "Excursion",
    "Shape",
    "SimConfig",
    "SimDevice",
    "Summary",
    "acked_readings",
    "build_device",
    "catalogue_keys",
    "devices_summary",
    "run_simulation",
    "site_for",
    "synthetic_devices",
]
