"""The engines a catalogue entry may name (its `engines`), in the order `auto` prefers
them. A module of its own: the command line needs the names, not the catalogue."""

ENGINE_NAMES = ("llama.cpp", "ctransformers")
