"""``python -m tests.oracle``: build the Go oracle if need be and print its path."""

import sys

from tests.oracle.build import main

sys.exit(main())
