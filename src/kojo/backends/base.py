"""What every backend is: a driver (driver.py) with kojo's stores on top of it
(job_store.py: job types and jobs; process_store.py: registrations and reaping;
lock_store.py, used by locks.py: semaphore rows; operator_store.py: what
operators ask, `kojo stats`, `jobs why`, `jobs purge`).
Each dialect (sqlite.py, postgres.py) subclasses Backend and implements the
driver's abstract methods and capability flags; nothing above this package
knows which dialect it runs on.
"""

from __future__ import annotations

from .driver import (
    BOOL_COLUMNS,
    JSON_COLUMNS,
    MESSAGE_TOPIC,
    NOTIFY_CHANNEL,
    Notification,
    Owner,
    ProcessInfo,
    Row,
)
from .operator_store import OperatorStore
from .process_store import ProcessStore

__all__ = [
    "BOOL_COLUMNS",
    "JSON_COLUMNS",
    "MESSAGE_TOPIC",
    "NOTIFY_CHANNEL",
    "Backend",
    "Notification",
    "Owner",
    "ProcessInfo",
    "Row",
]


class Backend(ProcessStore, OperatorStore):
    """A database holding kojo's tables, as seen from one process."""
