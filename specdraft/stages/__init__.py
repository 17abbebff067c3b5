"""The stages the workflow's rules run: one module per stage."""
