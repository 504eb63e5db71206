"""``python -m jaxvid.cli``."""

import sys

from jaxvid.cli import main

sys.exit(main())
