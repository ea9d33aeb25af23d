"""JSON text made the same way everywhere, by encoders built once.

``json.dumps`` given any option (``default=``, ``sort_keys=``) builds a new encoder on every call; the way of one
event made several such calls (results, audit entries, keys), each paying for that construction.
"""

from __future__ import annotations

import json

#: ``json.dumps(value, default=str)``: what JSON has no form for (a datetime, a Path) becomes its ``str``.
dumps = json.JSONEncoder(default=str).encode
#: The same with keys sorted: one text for one value, for digests and keys and for showing a value.
canonical = json.JSONEncoder(sort_keys=True, default=str).encode
