"""The platform's consumer-group lag exporter, for the native platform.

Lag is the signal an event-driven service is alerted on, and it must outlive
the service: a consumer that has stopped exports nothing itself, while the
messages keep piling up in Kafka. So the platform reads every group's
committed offsets and every partition's high-water mark from Kafka and serves
them at ``/metrics``.

Compose runs the danielqsj/kafka-exporter image for this. Natively that
exporter cannot be built: the Go module proxy refuses
github.com/danielqsj/kafka_exporter (403, every version), and so is the
collector's kafkametricsreceiver. This small exporter, on aiokafka's admin
client, serves the same metric names and labels with the same meaning
(``kafka_consumergroup_lag{consumergroup,topic,partition}`` and friends, and
each partition's leader, replicas and in-sync replicas), so
the alert rules and dashboards work unchanged in both modes::

    python -m lag_exporter --kafka 127.0.0.1:9092 --listen 127.0.0.1:9308

Modules: offsets.py (one read of the offsets from Kafka), metrics.py (the
metric families, as kafka-exporter names them), __main__.py (the refresh loop
and the HTTP server).
"""
