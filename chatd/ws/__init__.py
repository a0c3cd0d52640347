"""
The WebSocket endpoint at C{/socket.io}: Autobahn protocol and factory.
"""
