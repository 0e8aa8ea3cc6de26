"""The MQTT ingest pipeline: topics → decode → registry → store, driven by the worker.

``python manage.py ingest`` runs ``worker.IngestWorker``; the benchmark and tests can call
``worker.Ingestor.ingest`` (decode + store, no broker) or ``decode.decode_message`` directly.
"""
