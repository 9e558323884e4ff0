"""Real text in, tokens out: :mod:`assocmem.text.tokenize` splits a sentence into tokens,
:mod:`assocmem.text.morph` adds Russian lemmas and grammatical features (pymorphy3).

Import from the modules (``from assocmem.text.tokenize import tokenize``): this package
re-exports nothing, so ``assocmem.text.tokenize`` stays the module."""
