"""Scenario data: sources, style rewriters and the prepare stage."""
