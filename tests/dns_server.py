"""A small DNS server on loopback for tests: answers TXT questions from a dict, NXDOMAIN
for any other name, over UDP (answers are never truncated: loopback carries them whole)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


def txt_strings(value: str) -> str:
    """A TXT record's text as DNS zone text: quoted strings of at most 255 characters."""
    chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join(f'"{chunk}"' for chunk in chunks)


class Zone:
    """TXT records by name (each name may hold several); `records` may change while serving."""

    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = records
        self.queries: list[str] = []
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.1)
        self.port: int = self._socket.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        self.queries.append(name)
        values = self.records.get(name)
        if values is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.TXT:
            response.answer.append(
                dns.rrset.from_text_list(
                    question.name,
                    60,
                    dns.rdataclass.IN,
                    dns.rdatatype.TXT,
                    [txt_strings(value) for value in values],
                )
            )
        return response.to_wire()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                wire, peer = self._socket.recvfrom(4096)
            except TimeoutError:
                continue
            self._socket.sendto(self._answer(wire), peer)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._socket.close()


@contextmanager
def serving(records: dict[str, list[str]]) -> Iterator[Zone]:
    zone = Zone(records)
    zone.start()
    try:
        yield zone
    finally:
        zone.stop()
