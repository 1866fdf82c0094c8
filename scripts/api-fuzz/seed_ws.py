"""Gives an account something for the fuzzer to find: over the WebSocket (the only way chats and
images are made), two chats, one with a message and the assistant's reply, and one image.

Usage: python3 scripts/api-fuzz/seed_ws.py http://127.0.0.1:PORT sk_API_KEY

A minimal RFC 6455 client on the standard library, so the fuzzing needs no package but
schemathesis: text frames only, masked as a client must, and it fails on any error frame.
"""

import base64
import json
import os
import socket
import struct
import sys
import urllib.parse


def main(base_url, api_key):
    url = urllib.parse.urlsplit(base_url)
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    stream = sock.makefile("rb")
    handshake = (
        f"GET /ws HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
        f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {api_key}\r\n\r\n"
    )
    sock.sendall(handshake.encode())
    status = stream.readline()
    if b" 101 " not in status:
        sys.exit(f"no WebSocket upgrade: {status!r}")
    while stream.readline() not in (b"\r\n", b""):
        pass

    def send(message):
        data = json.dumps(message).encode()
        mask = os.urandom(4)
        length = bytes([0x80 | len(data)]) if len(data) < 126 else bytes([0x80 | 126]) + struct.pack("!H", len(data))
        sock.sendall(bytes([0x81]) + length + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def receive(wanted):
        while True:
            first, second = stream.read(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", stream.read(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", stream.read(8))[0]
            payload = stream.read(length)
            opcode = first & 0x0F
            if opcode == 8:
                sys.exit("the server closed the WebSocket")
            if opcode != 1:
                continue
            message = json.loads(payload)
            if message["type"] == "error":
                sys.exit(f"error frame: {message}")
            if message["type"] == wanted:
                return message

    receive("hello")
    for title in ("first seeded chat", "second seeded chat"):
        send({"type": "chat.create", "title": title})
        chat = receive("chat.created")["chat"]
    send({"type": "chat.send", "chat_id": chat["id"], "content": "Hello, fuzzer"})
    receive("chat.done")
    send({"type": "image.generate", "prompt": "a lighthouse at dusk", "width": 256, "height": 256})
    receive("image.created")
    sock.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
