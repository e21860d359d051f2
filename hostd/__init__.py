"""jitaccess host daemon, CLI and recorder."""

__version__ = "0.1.0"
