"""The service as ``make bench`` runs it under uvicorn: ``cds_service.main:app``, its logging left
as ``cds-service serve`` leaves it.

``cds-service serve`` hands uvicorn an app already built with ``access_log=False``: uvicorn then
empties the ``uvicorn.access`` logger that ``create_app`` gave a JSON handler, so a call writes
one line (``hook_call``). Under plain ``uvicorn cds_service.main:app --no-access-log`` the app is
built after uvicorn has set up its loggers, the handler stays, and every call writes a second
line (``http_request``, ~22 µs of CPU), which neither the deployed service nor the bare app
writes. The benchmark compares the service as it is deployed.
"""

from __future__ import annotations

import logging

from cds_service.main import create_app

app = create_app()
# What uvicorn does at start-up for access_log=False, once the app is built.
logging.getLogger("uvicorn.access").handlers = []
logging.getLogger("uvicorn.access").propagate = False
