"""The ruleset language: YAML with positions, the model, the expression checker, parameters,
derived values and item functions, loading with located errors, overlays, lint and documents."""
