"""`python -m srnvtk`: the same command as the `srnvtk` console script."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
