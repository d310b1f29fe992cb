"""``python -m webhook``: the same as the ``spacegate`` console script."""

import sys

from webhook.cli.main import main

sys.exit(main())
