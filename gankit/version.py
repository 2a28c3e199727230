"""gankit's version, in one place: the package, the files it writes and the build all read it from here."""

__version__ = "0.1.0"
