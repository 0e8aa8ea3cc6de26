"""The farm dashboard: pages, live WebSocket fan-out and charts."""
