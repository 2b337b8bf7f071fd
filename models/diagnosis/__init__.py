"""Fault diagnosis of vibration windows: which fault, on which component, and the evidence.

`diagnose(window, fs, machine, channels) -> Diagnosis` (verdict.py). Numpy only; imports
nothing from agent/. See docs/diagnosis.md.
"""

from models.diagnosis.machine import FAULTS, BearingOrders, MachineConfig
from models.diagnosis.verdict import Diagnosis, diagnose

__all__ = ["FAULTS", "BearingOrders", "Diagnosis", "MachineConfig", "diagnose"]
