"""What a person looks at, as data: each screen is a plain model built from the journal by the reader's
queries (``fastpose.journal.reader``), with no drawing. Faces draw them: ``terminal/`` (rich),
``markdown/`` (the exported log), ``plot/`` (matplotlib PNGs). docs/ARCHITECTURE.md, "Layers"."""
