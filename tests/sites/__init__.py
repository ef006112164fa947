"""Host sites: the app inside Django sites that differ from ``startproject``'s defaults.

Each module here is a settings module for one kind of site (see ``base.py`` for what they
share). ``make test-sites`` runs ``tests/sites/`` once per variant::

    pytest tests/sites --ds=tests.sites.custom_user

The tests in this folder also run in the main suite, against ``tests.settings``.
"""
