"""Commands on the versions of a conversation: /retry keeps the old reply, /alt
switches, /edit branches, /good /bad /unrate rate a reply."""

from __future__ import annotations

from collections.abc import Iterator

from prompt_toolkit.completion import Completion

from chatterm import branches
from chatterm.errors import ChattermError
from chatterm.records import Message
from chatterm.ui.commands.registry import CommandContext, command, complete_words


@command("retry", "[--base]")
def _retry(ctx: CommandContext, arg: str) -> None:
    """Answer the last question again; the old reply stays as an alternative (/alt).
    --base: answer with the base model alone (no LoRA adapters), to compare."""
    conversation = ctx.conversation
    if arg not in ("", "--base"):
        raise ChattermError("usage: /retry [--base]")
    if arg and not any(a.scale for a in ctx.loaded.adapters):
        raise ChattermError("no LoRA adapter is on: /retry alone answers with the base model")
    turn = conversation.retry()
    if arg:
        if not ctx.wait_for_engine(ctx.loaded):
            return
        with ctx.loaded.base_only():
            ctx.show_reply(turn)
    else:
        ctx.show_reply(turn)
    messages = conversation.messages
    every = branches.versions(messages, len(messages) - 1) if turn.kept else []
    if len(every) > 1:  # the new reply is the newest version, and the current one
        ctx.note(f"(alternative {len(every)} of {len(every)}: /alt N switches, Alt-←/→ too)")
        if any(Message.of(v[0]).content == conversation.record(-1).content for v in every[:-1]):
            ctx.note("(the same text as before: with temperature 0 every retry gives the same reply)"
                     if conversation.sampling.temperature == 0 else "(the same text as before)")


def complete_alt(arg: str) -> Iterator[Completion]:
    if " " in arg:
        return iter(())
    return complete_words(arg, [("next", ""), ("prev", ""), ("reply", "K N: an earlier reply"),
                        ("question", "K N: an earlier question")])


@command("alt", "[reply|question K] [N|next|prev]", complete=complete_alt)
def _alt(ctx: CommandContext, arg: str) -> None:
    """Switch to alternative N of the last reply (or of reply/question K); no N: list them."""
    conversation = ctx.conversation
    words = arg.split()
    role = {"reply": "assistant", "question": "user"}.get(words[0].lower()) if words else None
    if role is not None:
        if len(words) < 2 or not words[1].isdigit():
            raise ChattermError("usage: /alt [reply|question K] [N|next|prev]")
        i, words = conversation.fork(role, int(words[1])), words[2:]
    else:
        i = conversation.fork()
    if len(words) > 1:
        raise ChattermError("usage: /alt [reply|question K] [N|next|prev]")
    every = branches.versions(conversation.messages, i)
    current = branches.current_version(conversation.messages[i])
    what = branches.position(conversation.messages, i)
    if not words:
        from chatterm.ui.session_views import fit

        ctx.note(f"{what} has {len(every)} versions:")
        for number, version in enumerate(every, 1):
            first = Message.of(version[0])
            checked = next((Message.of(m).check_text for m in reversed(version)
                            if m["role"] == "assistant" and m.get("check")), "")
            marks = "  ".join(m for m in (first.rating.text if first.rating else "", checked, first.adapters_text)
                              if m)
            mark = "›" if number == current else " "
            ctx.note(f"{mark} {number}  {fit(first.content, 60)}{'  ' + fit(marks, 40) if marks else ''}")
        ctx.note("/alt N switches (Alt-←/→ at an empty prompt too)")
        return
    steps = {"next": current + 1, "prev": current - 1}
    try:
        number = steps[words[0]] if words[0] in steps else int(words[0])
    except ValueError:
        raise ChattermError("usage: /alt [reply|question K] [N|next|prev]") from None
    if not 1 <= number <= len(every):
        raise ChattermError(f"{what} has {len(every)} versions; this is {current}")
    conversation.choose(i, number)
    ctx.note(f"{what}: version {number} of {len(every)}")
    for message in conversation.records()[i:]:  # the conversation from there on, as it now goes
        if message.role == "user":
            ctx.show_question(message.content)
        else:
            ctx.show_message(message)


@command("edit", "[N|last] [TEXT]")
def _edit(ctx: CommandContext, arg: str) -> None:
    """No N: write a message in $VISUAL/$EDITOR, sent when saved. N (or last): ask
    question N again, edited in the input (Ctrl-X Ctrl-E: in the editor) or as TEXT;
    the old question and its replies stay an alternative."""
    conversation = ctx.conversation
    if not arg:
        text = ctx.compose()
        if text.strip():
            ctx.show_question(text)  # typed in the editor: nothing echoed it at the prompt
            ctx.ask(text)
        else:
            ctx.note("(nothing saved: nothing sent)")
        return
    asked = branches.count(conversation.messages, "user")
    if not asked:
        raise ChattermError("there is no question to edit yet")
    first, _, rest = arg.partition(" ")
    if first == "last":
        first = str(asked)
    if not first.isdigit():
        raise ChattermError("usage: /edit [N|last] [TEXT]; /edit alone opens your editor")
    number, text = int(first), rest.strip()
    if not 1 <= number <= asked:
        raise ChattermError(f"no question {number}: this conversation has {asked}")
    if text:
        ctx.show_reply(conversation.edit(number, text))
        return
    i = branches.index_of(conversation.messages, "user", number)
    assert i is not None  # 1 <= number <= asked
    ctx.begin_edit(number, conversation.record(i).content)


def _rating(ctx: CommandContext, arg: str, rating: str | None) -> None:
    first, _, rest = arg.partition(" ")
    number, note = (int(first.lstrip("#")), rest.strip()) if first.lstrip("#").isdigit() else (None, arg)
    number = ctx.conversation.rate(number, rating, note)
    if rating is None:
        ctx.note(f"reply {number}: rating removed")
    else:
        i = branches.index_of(ctx.conversation.messages, "assistant", number)
        given = ctx.conversation.record(i).rating if i is not None else None
        ctx.note(f"reply {number}: {given.text if given else ''}")


@command("good", "[N] [NOTE]")
def _good(ctx: CommandContext, arg: str) -> None:
    """Rate the last reply (or reply N) good, with an optional note."""
    _rating(ctx, arg, "good")


@command("bad", "[N] [NOTE]")
def _bad(ctx: CommandContext, arg: str) -> None:
    """Rate the last reply (or reply N) bad, with an optional note."""
    _rating(ctx, arg, "bad")


@command("unrate", "[N]")
def _unrate(ctx: CommandContext, arg: str) -> None:
    """Remove the rating of the last reply (or reply N)."""
    if arg and not arg.lstrip("#").isdigit():
        raise ChattermError("usage: /unrate [N]")
    _rating(ctx, arg, None)
