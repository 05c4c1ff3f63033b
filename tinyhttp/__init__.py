"""tinyhttp: a small, careful HTTP/1.1 static-file server built from raw sockets and h11."""

__all__ = ["__version__"]

__version__ = "0.1.0"
