"""
Handlers: chatd's domain rules, between the protocols (REST, WebSocket)
and the stores.
"""
