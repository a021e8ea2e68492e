"""`python -m bot.cli` is `anirec`."""

import sys

from bot.cli import main

sys.exit(main())
