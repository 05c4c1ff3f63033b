"""tinyhttp: a small, careful HTTP/1.1 static-file server built from raw sockets and h11."""

__all__ = ["SERVER", "__version__"]

__version__ = "0.1.0"
SERVER = f"tinyhttp/{__version__}"  # the Server header of every answer
