"""Put on PYTHONPATH by `scripted_engine.write_script`: every Python the test starts
(chatterm in a terminal, its engine worker) registers the scripted engine in place of
both real ones, so the worker plays the script through the real isolated path."""

import os

if os.environ.get("CHATTERM_TEST_SCRIPT"):
    from chatterm import engines
    from tests.scripted_engine import ScriptedEngine

    for name in engines.ENGINE_NAMES:
        engines.register(name, ScriptedEngine)
