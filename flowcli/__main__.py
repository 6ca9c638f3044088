"""Allow ``python -m flowcli``."""

from flowcli.cli import main

if __name__ == "__main__":
    main()
