"""Models from a Hugging Face hub: naming them, downloading them (resumable, verified)
and the models folder they land in. `client` is the only module that talks to the hub."""
