#!/usr/bin/env python
"""Entry point: train/test (default KGIN on ml-100k), convert, compare, tune. See --help."""

import sys

from recbole_kgin.cli import main

if __name__ == "__main__":
    sys.exit(main())
