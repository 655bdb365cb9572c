"""A Flask service as a Python developer instruments one today: nothing in the code, the
OpenTelemetry zero-code setup around it (`opentelemetry-instrument python app.py`, with
OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_ENDPOINT and Python logging's records sent too). It serves
the routes tests/test_real_apps.py's traffic asks for."""

import logging
import os
import time

from flask import Flask

app = Flask(__name__)
log = logging.getLogger("python-api")


@app.get("/items/<int:item>")
def item(item: int):
    return {"item": item}


@app.get("/fail")
def fail():
    log.warning("the /fail route failed on purpose")
    return {"error": "failed on purpose"}, 500


@app.get("/slow")
def slow():
    time.sleep(0.2)
    return {"slow": True}


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ["PORT"]), threaded=True)
