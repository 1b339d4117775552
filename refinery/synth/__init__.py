"""refinery-synth: realistic e-commerce landing data with known faults, drift and ground truth."""

from refinery.synth.config import DRIFT_PRESETS, DriftSettings, SynthConfig
from refinery.synth.generate import generate

__all__ = ["DRIFT_PRESETS", "DriftSettings", "SynthConfig", "generate"]
