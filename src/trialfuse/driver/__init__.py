"""The driver: reads the table, runs the studies, writes the run directory. Never imports torch."""
