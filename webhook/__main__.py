"""``python -m webhook``: the same as the ``spacegate`` console script."""

import sys

from webhook.cli.main import main

if __name__ == "__main__":  # not when a child process (the background audit) imports it
    sys.exit(main())
