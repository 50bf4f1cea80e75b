"""maillage: an event-driven IoT data backbone for smart territories."""

__version__ = "0.1.0"
