"""flowcli: run and debug multi-role dialogue sessions from the command line."""

__version__ = "0.1.0"
