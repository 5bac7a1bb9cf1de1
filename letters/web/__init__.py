"""Everything that knows HTTP: one module per area exporting its `routes`, and the layers
every request passes through (language, fast path, security headers, CORS, body limit)."""

# The JSON interface lives under this prefix: its errors are JSON, in English, whatever
# address under it was asked for (also one that matches no route).
API_PREFIX = "/api/"


def is_api(path: str) -> bool:
    return path.startswith(API_PREFIX)
