"""EntroPO engine: the model math behind the TypeScript orchestration (see engine/README.md)."""
