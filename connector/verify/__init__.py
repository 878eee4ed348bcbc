"""``connector verify``: read a sample of confirmed contacts back from the vendor and compare
them with what the warehouse holds now (docs/verify.md).

``share`` paces the reads on a small share of the account's rate; ``vendors`` knows each
vendor's documented read endpoint and the fields a profile payload sets; ``compare`` judges one
field; ``run`` samples, re-maps, reads and reports.
"""
