"""Rules a farm manager can start from, with numbers that rarely cry wolf.

Thresholds follow common agronomic rules of thumb: frost damage starts near 0 °C at crop
height, which a screen 1.5 m up reads a couple of degrees warmer; heat stress in most
crops and livestock from the low 30s; most loams are stressed below ~20 % volumetric
water and waterlogged above ~45 %.
"""

from __future__ import annotations

from typing import Any, Final

PRESETS: Final[dict[str, dict[str, Any]]] = {
    "frost-risk": {
        "name": "Frost risk",
        "metric": "air_temperature",
        "kind": "below",
        "threshold": 2.0,
        "clear": 3.0,
        "for_minutes": 10,
        "severity": "critical",
        "note": "Frost likely at crop height: start frost protection.",
    },
    "heat-stress": {
        "name": "Heat stress",
        "metric": "air_temperature",
        "kind": "above",
        "threshold": 32.0,
        "clear": 30.0,
        "for_minutes": 30,
        "severity": "warning",
        "note": "Check livestock water and shade; irrigate sensitive crops.",
    },
    "soil-too-dry": {
        "name": "Soil too dry",
        "metric": "soil_moisture",
        "kind": "below",
        "threshold": 20.0,
        "clear": 23.0,
        "for_minutes": 60,
        "severity": "warning",
        "note": "Schedule irrigation.",
    },
    "waterlogged": {
        "name": "Waterlogged",
        "metric": "soil_moisture",
        "kind": "above",
        "threshold": 45.0,
        "clear": 40.0,
        "for_minutes": 360,
        "severity": "warning",
        "note": "Keep machinery off; check drains.",
    },
    "low-battery": {
        "name": "Low battery",
        "metric": "battery",
        "kind": "below",
        "threshold": 15.0,
        "clear": 25.0,
        "for_minutes": 30,
        "severity": "info",
        "note": "Replace or recharge the battery.",
    },
    "device-offline": {
        "name": "Device offline",
        "metric": "soil_moisture",
        "kind": "device_offline",
        "for_minutes": 15,
        "severity": "warning",
        "note": "Check the device's power and signal.",
    },
    "no-data": {
        "name": "No data",
        "metric": "soil_moisture",
        "kind": "no_data",
        "for_minutes": 60,
        "severity": "warning",
        "note": "A sensor has gone quiet: check the probe and its cable.",
    },
}
