"""Front ends: the ``connector`` command (``main``) and the demo (``demo``, ``demo_run``)."""
