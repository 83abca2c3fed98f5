"""reporthubd: the scheduled-report daemon."""

__version__ = "0.1.0"
