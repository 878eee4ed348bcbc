"""One judge of error answers, for every event and contact destination: is a refusal about
the request (the run fails: no reject, the checkpoint stays) or about some of its items (each
a reject of its row)?

The answer's structure decides first, its wording only where the structure cannot:

1. A pointer at the request — a header, a query parameter, the body's envelope (Klaviyo
   ``source.header`` / ``source.parameter`` / a ``pointer`` outside the events) — or a status
   that is about the resource or the protocol, never about items (404, 405, 406, 410 Gone:
   a retired API version, 415) → the request.
2. A pointer at items — an index (Brevo ``eventIndex``), a JSON pointer into the items
   (Klaviyo), a field of the one item a request carries (Omnisend ``errors[].field`` or v4/v5
   ``fields``) → those items.
3. Neither, in an error format that has a place for item detail (``detail_format``: Brevo's
   batch ``errors[]``, Klaviyo's ``source``, Omnisend's ``errors`` / ``fields``, an RFC 9457
   problem body) → the request: the vendor says which item is wrong when an item is (an RFC
   9457 problem without ``errors``, e.g. Omnisend answering an unsupported or retired
   ``Omnisend-Version``, is about the request whatever its words).
4. Neither, in a format without such a place (Brevo's single-event ``{code, message}``, its
   tracker) → the wording (``request_problem``): the version, a header, the media type, auth,
   JSON syntax or the body's top-level shape are about the request; anything else is about
   the one item sent.

Every destination reads its vendor's body into these facts and calls ``judge``; none
decides on its own.
"""

from __future__ import annotations

import enum
import re

# Statuses that are about the endpoint, the version or the protocol, never about an item.
REQUEST_STATUSES = frozenset({404, 405, 406, 410, 415})

# Words of an error about the request rather than its content: the API version or Klaviyo's
# revision, a header (Omnisend-Version among them), the media type, auth, a body that is not
# JSON or not the expected shape (Go's "cannot unmarshal X into Go value of type T" names the
# top-level type; a field of one event reads "into Go struct field ...", which is about that
# event).
_REQUEST_WORDS = re.compile(
    r"\b(?:revision|api[ _-]?version|unsupported(?: [\w-]+)? version|[\w]+-version"
    r"|headers?|content[ -]type|media[ -]type"
    r"|api[ _-]?key|unauthori[sz]ed|authenticat\w*|credentials?|access token"
    r"|json parse|parse error|not valid json|invalid json|malformed"
    r"|cannot unmarshal \w+ into go value of type)\b",
    re.IGNORECASE,
)


class About(enum.Enum):
    """What a refusal is about."""

    REQUEST = "request"  # the run fails: no reject, the checkpoint stays
    ITEMS = "items"  # the items it points at (or the one item sent) are rejects


def request_problem(message: str) -> bool:
    """True when a vendor's error text is about the request itself (version, header, media
    type, auth, JSON syntax or body shape), which no item of it can cause or fix."""
    return bool(_REQUEST_WORDS.search(message))


def judge(
    status: int,
    message: str,
    *,
    item_detail: bool,
    request_detail: bool = False,
    detail_format: bool = True,
) -> About:
    """What an error answer (a final 4xx other than 401/403/429) is about, by its structure
    first (module docstring): ``request_detail`` — it points at the request (a header, a
    parameter, the envelope); ``item_detail`` — it points at items (an index, a pointer, a
    field); ``detail_format`` — the vendor's error format has a place for item detail, so
    its absence means the request. ``message`` (the vendor's words) decides only when the
    format has no such place."""
    if request_detail or status in REQUEST_STATUSES:
        return About.REQUEST
    if item_detail:
        return About.ITEMS
    if detail_format:
        return About.REQUEST
    return About.REQUEST if request_problem(message) else About.ITEMS
