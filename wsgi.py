"""WSGI entry point: ``gunicorn wsgi:app`` (production) or ``flask --app wsgi ...`` (CLI)."""

from app import create_app

app = create_app()
