"""
chatd's WebSocket wire protocol: the protobuf frame (generated from
C{proto/message.proto}) and the helpers that build and read frames.
"""
