"""A real Flask app, served by forkserver in the tests."""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/hello/<name>")
def hello(name):
    return f"Hello, {name}!"


@app.post("/json")
def echo_json():
    return jsonify(received=request.get_json(), pid_is_child=True)


@app.get("/missing")
def missing():
    return "nothing here", 404


# Answers only the names it trusts, as Django's ALLOWED_HOSTS does: any other
# Host header gets 400 from Flask itself.
strict_hosts = Flask("strict_hosts")
strict_hosts.config["TRUSTED_HOSTS"] = ["www.example.com"]


@strict_hosts.get("/healthz")
def healthz():
    return "ok"
