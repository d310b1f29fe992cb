"""``python -m webhook``: the same as the ``spacegate`` console script."""

import sys

from webhook.cli import main

sys.exit(main())
