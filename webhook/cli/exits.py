"""The exit codes of every ``spacegate`` command (a CI contract, in the README).

One definition, so ``check``, ``audit``, ``snapshot``, ``serve`` and ``certs`` cannot drift
apart: 0 everything is fine, 1 the command did its job and found something refused (or a
source, or the server, failed), 2 bad input or usage.
"""

from __future__ import annotations

from typing import Final

OK: Final = 0
REFUSED: Final = 1  # check/audit: something is refused; snapshot: a source failed
FAILED: Final = 1  # serve: the server could not start; certs: files could not be written
USAGE: Final = 2  # bad input, config or usage
INTERRUPTED: Final = 130  # Ctrl-C
