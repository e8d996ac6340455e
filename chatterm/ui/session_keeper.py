"""One writer per session, and saves that never lose a turn.

A chat holds its session's lock (`session_lock`) for as long as it has it open; a
second chat on the same session is asked to go on in a copy, only read it, or leave.
The session is saved after every change of its conversation; a save that fails is
said once and tried again at the next change, and a file someone else wrote since is
never overwritten: the chat goes on in a copy beside it. At exit, a session whose
folder still refuses it goes to the temporary folder."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chatterm import sessions
from chatterm.conversation import Conversation
from chatterm.errors import ChattermError
from chatterm.records import Message
from chatterm.sessions.lock import SessionLock


class SessionKeeper:
    def __init__(self, conversation: Conversation, choose: Callable[[str, str], str],
                 note: Callable[[str], None], error: Callable[[str], None]):
        """`choose(question, letters)`: the user's answer (see `Repl.choose`)."""
        self.conversation = conversation
        self._choose, self._note, self._error = choose, note, error
        self._lock: SessionLock | None = None  # this chat's hold on its session (`claim`)
        self.read_only = False  # the session is open in another chat, and this one only reads it
        self.problem = ""  # why the last autosave failed ("" when it did not)
        conversation.on_change = self.autosave

    @property
    def session(self) -> sessions.Session:
        return self.conversation.session

    def claim(self, session: sessions.Session | None = None) -> sessions.Session | None:
        """Take the lock of `session` (default: the current one) for this chat, in place
        of the lock held before. When another chat holds it, the user chooses: go on in
        a copy under a new name, only read it here, or leave it (None)."""
        session = session or self.session
        if session.path == self.session.path and self._lock is not None and not self.read_only:
            return session  # this chat holds it already (/load of the session open here)
        while True:
            lock = SessionLock.take(session.path)
            if isinstance(lock, SessionLock):
                read_only = False
                break
            holder = f" (pid {lock})" if lock else ""
            answer = self._choose(f"session {session.name} is open in another chatterm{holder}: "
                                  "[C]ontinue in a copy, [r]ead it only, or [q]uit?", "crq")
            if answer == "q":
                return None
            if answer == "r":
                lock, read_only = SessionLock(None), True
                break
            session = dataclasses.replace(session, name=sessions.free_name(session.name), stamp=None)
            self._note(f"continuing in a copy: session {session.name}")
        if self._lock is not None:
            self._lock.release()
        self._lock, self.read_only = lock, read_only
        if session.repaired:
            self._note(f"session {session.name}: {session.repaired}")
        return session

    def begin(self) -> bool:
        """Claim the session the chat starts in (False: the user chose to leave)."""
        claimed = self.claim()
        if claimed is None:
            return False
        if claimed is not self.session:  # a copy under a new name
            self.conversation.open(claimed)
        return True

    @property
    def held(self) -> bool:
        return self._lock is not None

    def autosave(self) -> None:
        """After every change (`Conversation.on_change`): the session on disk. A save
        that fails is said once, the conversation stays as it is in memory, and the
        next change saves it again. A file someone else wrote since is never
        overwritten: this chat goes on in a copy beside it."""
        if self.read_only:
            return
        session = self.session
        try:
            if session.changed_elsewhere():
                old = session.name
                self._move_to_copy(session)
                self._note(f"session {old} was written by another program since this chat opened it: "
                           f"this chat goes on as {session.name} (both kept)")
            self.save()
        except ChattermError as e:
            if str(e) != self.problem:
                self._error(f"not saved: {e}; the conversation is kept, and saved again at the next change "
                            "(/save PATH writes it elsewhere)")
            self.problem = str(e)
            return
        if self.problem:
            self.problem = ""
            self._note(f"saved again: {session.path}")

    def _move_to_copy(self, session: sessions.Session) -> None:
        """`session` goes on under the first free name beside its own, locked for this
        chat (asked of nobody: it is called between the steps of a turn)."""
        while True:
            session.name, session.stamp = sessions.free_name(session.name), None
            lock = SessionLock.take(session.path)
            if isinstance(lock, SessionLock):
                break
        if self._lock is not None:
            self._lock.release()
        self._lock = lock

    def save(self, path: Any = None) -> Any:
        if path is None and self.read_only:
            raise ChattermError(f"session {self.session.name} is read-only here: /save PATH writes a copy")
        return self.session.save(path)

    def close(self) -> None:
        """The chat is over: a session with any turn saved (elsewhere if its folder
        refuses it, and said where), its lock released."""
        try:
            if self._lock is not None and not self.read_only and any(
                    Message.of(m).role != "system" for m in self.session.messages):
                self.autosave()
                if self.problem:
                    self._save_fallback()
                else:
                    self._note(f"session saved: {self.session.path} (chatterm -c resumes it)")
        finally:
            self.release()

    def release(self) -> None:
        """Let another chat open this session."""
        if self._lock is not None:
            self._lock.release()

    def _save_fallback(self) -> None:
        """The session's own file could not be written: the conversation goes to the
        temporary folder, and the user is told where (or that even that failed)."""
        fallback = Path(tempfile.gettempdir()) / f"chatterm-{self.session.name}.json"
        try:
            self.save(fallback)
        except ChattermError as e:
            raise ChattermError(f"the session could not be saved: {self.problem}; nor to {fallback}: {e}") from None
        self._error(f"the session could not be saved to {self.session.path} ({self.problem}); "
                    f"it is in {fallback} (/load {fallback} reopens it)")
