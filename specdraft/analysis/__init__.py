"""What the summary computes and draws from the benchmark's outputs: statistics, tables, plots, report pages."""
