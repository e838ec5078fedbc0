"""``python -m paramscale.cli``: the same as the ``paramscale`` command."""

import sys

from paramscale.cli import main

sys.exit(main())
