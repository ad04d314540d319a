"""What a person sees of a run: the live progress and comparison table (progress.py) and
the HTML report (report.py). A layer above the driver: it reads what a run wrote and the
driver's records, and the driver never imports it (import-linter checks the arrows)."""
