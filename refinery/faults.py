"""Injected kill points for the fault tests.

`kill_point("silver.after_parts")` is a no-op unless the environment variable
`REFINERY_KILL_AT` names that point (comma-separated for several): then the process
SIGKILLs itself right there, as a power cut or the OOM killer would. Tests set the
variable for one run, then rerun without it and compare the outputs with an
uninterrupted run's. No timing is involved: the kill happens at a named place in the code.
"""

from __future__ import annotations

import os
import signal

KILL_ENV = "REFINERY_KILL_AT"


def kill_point(name: str) -> None:
    wanted = os.environ.get(KILL_ENV)
    if wanted and name in (part.strip() for part in wanted.split(",")):
        os.kill(os.getpid(), signal.SIGKILL)
