"""The application layer: the `twin` command and the orchestration it drives (the run pipeline, policy
comparison). It sits on top of every other package; nothing imports it."""
