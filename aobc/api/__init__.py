"""The control plane: the HTTP API behind `aobc serve` (see docs/api.md).

- `app.py`: the Starlette application (auth, request checks, errors, metrics per request);
- `routes.py`: every endpoint once, from which the app and `openapi.py` are built;
- `backend.py`: `ControlPlane`, what the API needs from a runtime; `embedded.py` implements
  it over the embedded store, with `runner.py` (driving runs), `hub.py` (SSE fan-out),
  `registry.py` (deployments and tags) and `views.py` (response shapes, `schemas.py`);
- `auth.py`: tokens, roles, permissions; `sse.py`: the event stream; `metrics.py`.
"""
