"""Baseline for bench/signup_throughput.py: a bare Flask app whose one endpoint parses the JSON
body and does a single `INSERT ... RETURNING id` into PostgreSQL (SQLAlchemy pool, psycopg 3).

Run by the benchmark under the same gunicorn configuration as `wsgi:app`:
    DATABASE_URL=postgresql+psycopg://... gunicorn -c <conf> bench.baseline_app:app
The table `bench_baseline` (`CREATE_TABLE` in the benchmark) is created before gunicorn starts.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from flask import Flask, jsonify, request

#: The same pool as leadsvc's engine (leadsvc.db.create_db_engine).
engine = sa.create_engine(
    os.environ["DATABASE_URL"],
    pool_size=5,
    max_overflow=5,
    pool_timeout=5,
    connect_args={"connect_timeout": 3},
)
INSERT = sa.text(
    "INSERT INTO bench_baseline (email, first_name, last_name, zip) "
    "VALUES (:email, :first_name, :last_name, :zip) RETURNING id"
)

app = Flask("baseline")


@app.post("/api/v1/signups")
def signup():
    body = request.get_json()
    with engine.begin() as connection:
        lead_id = connection.execute(
            INSERT,
            {key: body.get(key) for key in ("email", "first_name", "last_name", "zip")},
        ).scalar_one()
    return jsonify(status="received", id=lead_id), 202
