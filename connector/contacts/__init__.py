"""Contact (profile) syncs' diffing: which rows changed since the vendor last confirmed them.

A contact sync is a state, not a time series. Its run (``connector.run.contacts``, a strategy
in the run shell) reads the source page by page in key order; here each row's mapped,
normalized values are hashed together with the mapping's fingerprint (``diff``), the page is
compared with the stored hashes (``differ``: an ordered ``merge`` in key order, ``keyorder``,
or key lookups; the stored hashes are ``hashes``, their table is in ``store.schema``), and the
stored rows whose source row vanished are found. Only new and changed rows are sent; a row's
stored hash moves only when the vendor confirmed that row, so failed, rejected and unconfirmed
rows are sent again by later runs.
"""
