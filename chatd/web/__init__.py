"""
chatd's HTTP side: the site, the REST API and the WebSocket endpoint.
"""
