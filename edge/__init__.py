"""edge: the site controller of an EV charging site."""

__version__ = "0.1.0"
