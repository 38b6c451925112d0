"""Prefect flows: they only wire `meterread` library steps as tasks."""
