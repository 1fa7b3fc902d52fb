"""biomarker-worker: clinical notes from Kafka in, per-sentence biomarker flags out."""

__version__ = "0.1.0"
