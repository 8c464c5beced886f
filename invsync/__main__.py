"""`python -m invsync` runs the `invsync` command."""

from invsync.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
