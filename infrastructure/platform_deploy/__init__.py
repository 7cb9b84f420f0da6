"""The steps of ./deploy-all.sh that are easier to get right in Python than in shell.

Each step works the same whether the platform runs in Docker or as local
processes: it talks to Kafka and Consul through their published loopback
ports. Unlike platform_native (standard library only, it runs before any
virtualenv exists) these steps run in the repository's .venv: they need
PyYAML, aiokafka and httpx. Run them with both folders on the path::

    PYTHONPATH=infrastructure:infrastructure/native .venv/bin/python -m platform_deploy --help

Modules: discovery.py (the services under services/), topics.py,
databases.py (each service's PostgreSQL database and role), kong.py
(merge and validate the snippets; load them into a running Kong),
compose.py (the services' Compose file), native_services.py (start and stop
the services as processes), health.py (wait for them in Consul) and
addresses.py (every address, printed at the end of `up`) and alerts.py (the
alerts firing now, for `status`).
"""
