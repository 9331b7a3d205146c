"""The baseline: a bare FastAPI app that parses the JSON body and returns one fixed card.

Run by ``bench.run`` under uvicorn exactly as the service is (same flags, one worker), so the ratio
service/bare is the cost of the service's own work on top of FastAPI, uvicorn and JSON parsing.
Unlike the service it does not ``gc.freeze()`` at start-up: it is plain FastAPI, as a new project
would write it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

CARD: dict[str, Any] = {
    "cards": [
        {
            "uuid": "9f0c6f5e-3c1b-4a57-9d0e-6f1b2c3d4e5f",
            "summary": "Bare FastAPI baseline card",
            "indicator": "info",
            "source": {"label": "bare"},
        }
    ]
}


@app.post("/cds-services/{service_id}")
async def call_service(service_id: str, request: Request) -> dict[str, Any]:
    await request.json()  # parse the whole body, as any CDS service must
    return CARD
