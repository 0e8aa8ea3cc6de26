"""The two-command start: ``make run`` and ``make test`` (docs/architecture.md §2).

``python -m farm.devstack run`` starts an embedded PostgreSQL, Valkey and
amqtt broker for whichever of ``DATABASE_URL``, ``REDIS_URL`` and ``MQTT_URL``
is unset, prepares the database (migrate, static files, demo farm) and
supervises the Procfile's processes until Ctrl-C or SIGTERM.
``python -m farm.devstack test -- [pytest args]`` does the same for the test
suite with throwaway data.

The modules hold plain functions that tests call directly; ``__main__`` is the
thin entry point that owns signal handling. Nothing here imports Django
settings: the stack is what provides the environment those settings need.
"""
