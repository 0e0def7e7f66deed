"""smartbank: an open smart-banking platform."""

__version__ = "0.1.0"
