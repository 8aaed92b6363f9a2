"""Trainer callbacks: temperature schedules and monitors of discrete bottlenecks.

All of them follow the distributed rules of ``docs/design.md``: every collective runs on
every rank, counts are summed across ranks before any perplexity is computed, and
gradients are read where Lightning has already averaged, unscaled and accumulated them.
"""

from .active_units import ActiveUnitMonitor
from .adaptive import AdaptiveTemperature, adapt_temperature
from .gate_usage import GateUsageMonitor, gate_histogram, gate_usage_figure
from .saturation import SaturationMonitor
from .gradient_snr import GradientSNRMonitor, snr_statistics
from .temperature import SCHEDULE_KINDS, Schedule, TemperatureScheduler, schedule_value
from .summary import TrainingSummary, training_curves_figure
from .threads import CPUThreads
from .utilization import LatentUtilizationMonitor

__all__ = [
    "TemperatureScheduler",
    "Schedule",
    "schedule_value",
    "SCHEDULE_KINDS",
    "AdaptiveTemperature",
    "adapt_temperature",
    "LatentUtilizationMonitor",
    "GradientSNRMonitor",
    "snr_statistics",
    "ActiveUnitMonitor",
    "SaturationMonitor",
    "GateUsageMonitor",
    "gate_histogram",
    "gate_usage_figure",
    "TrainingSummary",
    "training_curves_figure",
    "CPUThreads",
]
