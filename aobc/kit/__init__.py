"""The pass-authoring kit: `aobc pass new|build|test` (docs/plugins.md)."""
