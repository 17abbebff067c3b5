"""What every stage leans on: configuration, logs, atomic files, GPU devices and budgets."""
