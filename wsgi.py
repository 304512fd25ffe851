"""WSGI entry point: `gunicorn --config config/gunicorn.conf.py wsgi:app`."""

from leadsvc.app import create_app

app = create_app()
