from twisted.application.service import ServiceMaker

chatd = ServiceMaker(
    "chatd",
    "chatd.tap",
    "A chat server speaking the go-chat protocol (REST and WebSocket).",
    "chatd",
)
