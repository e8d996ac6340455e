"""The ctransformers engine (`engine`) with what it needs of its own: a compatible copy
of modern GGUF files (`compat`) and a byte-level BPE tokenizer (`bpe_tokenizer`,
`pretokenize`) for the files its bundled llama.cpp cannot tokenize."""
