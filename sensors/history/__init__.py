"""The read side of readings: every query on ``sensors_reading`` outside the ingest store.

Pages, consumers, alerts and APIs read readings only through ``sensors.history.selectors``,
so a change of storage (raw rows to hourly and daily rollups, docs/architecture.md §4)
happens here and nowhere else.
"""
