"""Benchmarks for django-hubspot-connect: ``python benchmarks/run.py`` (or ``make bench``)."""
