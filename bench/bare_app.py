"""The baseline: a bare Flask JSON route, served exactly like the service."""
from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/api/v1/entitlements")
def entitlements():
    return jsonify(entitled=True, status="active", paid_through=None)
