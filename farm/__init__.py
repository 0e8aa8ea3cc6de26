"""Furrow project package: settings, URLs, ASGI, Celery, and farm tenancy models."""

from farm.celery import app as celery_app

__all__ = ["celery_app"]
