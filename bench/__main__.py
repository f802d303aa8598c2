"""``python -m bench``: see ``bench.cli``."""

from .cli import main

if __name__ == "__main__":  # worker processes import this module too (multiprocessing)
    raise SystemExit(main())
