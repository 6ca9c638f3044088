"""Whether a claim on a session (``sessions.lease_owner``, ``lease_expires_at``) is live.

A pure reading of the two columns and of this host's processes, below the engine, so the
engine (claiming, recovering), batches and the doctor (stuck sessions) decide it alike.
An owner id is ``host:pid:suffix`` (flowcli.engine.claims.process_owner).
"""

from __future__ import annotations

import os
import platform
from datetime import datetime


def host_name() -> str:
    """This host's name, as owner ids carry it (``platform.node()``: the same name as
    ``socket.gethostname()``, without importing socket on every step command)."""
    return platform.node()


def owner_alive(owner: str | None) -> bool | None:
    """Whether the process named by an owner id (host:pid:…) runs; None if not knowable
    from here (another host)."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != host_name() or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_live(owner: str | None, expires: datetime | None, now: datetime) -> bool:
    """A claim someone may still be acting on: unexpired, and its process not known gone."""
    return (
        owner is not None
        and expires is not None
        and expires > now
        and owner_alive(owner) is not False
    )
