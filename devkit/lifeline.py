"""Child processes that die with the process that started them (Linux ``PR_SET_PDEATHSIG``).

Brokers and workers of a fault run are stopped by PID in ``finally`` blocks; this is the net
below that for a run that is itself killed outright (SIGKILL, an abort inside a native library),
which would otherwise leave JVMs and workers running. The command is started through
util-linux's ``setpriv --pdeathsig KILL``, which sets the flag and then execs it (same PID). The
kernel sends the signal when the *thread* that started the child exits, so start children only
from threads that live as long as the children should.
"""

from __future__ import annotations

import shutil
import sys


def die_with_parent() -> list[str]:
    """A prefix for a command line that makes the child get SIGKILL when its parent thread
    ends; empty where ``setpriv`` (or the feature) is missing."""
    if not sys.platform.startswith("linux"):
        return []
    setpriv = shutil.which("setpriv")
    return [] if setpriv is None else [setpriv, "--pdeathsig", "KILL", "--"]
