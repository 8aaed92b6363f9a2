"""``python -m lightning_discrete`` = the ``lightning-discrete`` command."""

from .cli import main

if __name__ == "__main__":
    main()
