"""`python cli.py ...` is the same as the installed `deep-speaker ...` command."""

import sys

from deep_speaker.cli import main

if __name__ == "__main__":
    sys.exit(main())
