"""paramscale: command-line entry points (``paramscale --help``)."""
