"""The conversation core, below every front end and above the engines.

- `core.Conversation`: messages, sampling, the last reply and the operations on them.
- `backend.Backend`: what answers a conversation: `local.LocalBackend` (an engine, its
  chat template from `templates`, its prompt cache, replies streamed by `generation`)
  or `remote.RemoteBackend` (an OpenAI-compatible server).
- `turn.Turn`: one reply being made (send, continue, retry, edit): its events, then
  what happened (recorded, started, kept, finish, dropped).
- `reply`: a reply as it streams, and the `Finish` that tells why it ended.
- `context_window`: the one rule for keeping a conversation inside the window.
"""

from chatterm.conversation.core import Conversation
from chatterm.conversation.reply import Finish, Reply
from chatterm.conversation.turn import Turn

__all__ = ["Conversation", "Finish", "Reply", "Turn"]
