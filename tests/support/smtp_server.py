"""A small SMTP server for the email notifier's tests: it answers RCPT with a chosen code
and counts the sessions and recipients it saw (RFC 5321's replies, nothing stored)."""

from __future__ import annotations

import socketserver

from tests.support.loopback import LoopbackServer


class SmtpServer(LoopbackServer):
    def __init__(self, rcpt_reply: str = "250 OK") -> None:
        self.rcpt_reply = rcpt_reply
        self.sessions = 0
        self.recipients: list[str] = []
        self.messages = 0

    def start(self) -> SmtpServer:
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self) -> None:
                fake.sessions += 1
                self.reply("220 fake ESMTP")
                accepted = 0
                while line := self.rfile.readline():
                    verb = line.decode(errors="replace").strip().split(" ", 1)[0].upper()
                    if verb in ("EHLO", "HELO"):
                        self.reply("250 fake")
                    elif verb == "MAIL":
                        self.reply("250 OK")
                    elif verb == "RCPT":
                        fake.recipients.append(line.decode().split(":", 1)[1].strip())
                        self.reply(fake.rcpt_reply)
                        accepted += fake.rcpt_reply.startswith("2")
                    elif verb == "DATA":
                        if not accepted:
                            self.reply("554 no valid recipients")
                            continue
                        self.reply("354 go ahead")
                        while self.rfile.readline() not in (b".\r\n", b""):
                            pass
                        fake.messages += 1
                        self.reply("250 queued")
                    elif verb == "RSET":
                        self.reply("250 OK")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("502 not implemented")

        self.serve(Handler, socketserver.ThreadingTCPServer)
        return self
