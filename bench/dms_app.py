"""The production app plus a bare endpoint that only reads the body: the floor for DMS intake."""

from flask import request

from app import create_app

app = create_app()


@app.post("/bench/bare")
def bare() -> tuple[dict, int]:
    request.get_data(cache=False)
    return {"status": "accepted"}, 202
