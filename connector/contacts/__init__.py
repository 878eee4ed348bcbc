"""Contact (profile) syncs: warehouse rows → vendor profiles, sending only what changed.

A contact sync is a state, not a time series. A run reads the source page by page in key
order (after the cursor's checkpoint when one is set, else the whole table), hashes each row's
mapped, normalized values together with the mapping's fingerprint (``diff``), compares the
page with the stored hashes (``merge``: an ordered merge in key order, ``keyorder``; else key
lookups in ``hashes``; the table is ``schema``) and sends only new and changed rows through the
vendor's bulk import job (``klaviyo``; shared job plumbing in ``vendor``). A row's stored hash
moves only when the vendor confirmed that row (job complete, the row not among its errors), so
failed, rejected and unconfirmed rows are sent again by later runs. ``engine`` wires it.

This package's ``__init__`` imports nothing: ``connector.config`` imports the destination
models while it is still being built.
"""
