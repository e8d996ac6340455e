"""Sessions: conversations kept on disk.

- `store`: a session's file (written atomically after every change, read back whole
  or refused in one line), the sessions folder and names;
- `lock`: one chat writing a session at a time;
- `markdown`: the transcript people read (and a message's marks);
- `archive`: listing and searching the saved sessions, however many;
- `datasets`: training data made from them (`chatterm export`).

The store's names are the package's: `sessions.Session`, `sessions.load`, ...
"""

from chatterm.sessions.markdown import RATINGS
from chatterm.sessions.store import (
                                     FORMAT,
                                     MAX_FILE,
                                     NAME,
                                     Session,
                                     SessionError,
                                     atomic_write,
                                     check_name,
                                     choose,
                                     clean_leftovers,
                                     ensure_private_dir,
                                     file_stamp,
                                     free_name,
                                     load,
                                     most_recent,
                                     mtime,
                                     new_name,
                                     path_of,
                                     read,
                                     sessions_dir,
)

__all__ = ["FORMAT", "MAX_FILE", "NAME", "RATINGS", "Session", "SessionError", "atomic_write", "check_name", "choose",
           "clean_leftovers", "ensure_private_dir", "file_stamp", "free_name", "load", "most_recent", "mtime",
           "new_name", "path_of", "read", "sessions_dir"]
