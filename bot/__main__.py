"""`python -m bot` is `anirec`."""

import sys

from bot.cli import main

sys.exit(main())
