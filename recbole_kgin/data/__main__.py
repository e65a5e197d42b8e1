"""``python -m recbole_kgin.data --src DIR --name NAME ...`` runs the converter."""

import sys

from recbole_kgin.data.convert import main

sys.exit(main(sys.argv[1:]))
