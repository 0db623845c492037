"""A Django 5 notes service served over ASGI by uvicorn; see ``__main__`` for how to run it.

Sync views on the psycopg 3 backend; the variant is ``CONN_MAX_AGE``: ``leaky`` keeps every
request's connection open (they pile up until the cyclic GC), ``correct`` closes it after each request.
"""
