"""``wa-relay`` (``python -m connector.cli``): the connector's HTTP API from the terminal: sessions, linking a phone
by QR or pairing code, sending, following events.

A client package: it imports nothing of the connector it talks to and reads the API's JSON as plain data, so it
starts fast and keeps working against a connector of another version that answers the same API (DESIGN section 8).

- ``program``: arguments, exit codes, ``main``;
- ``target``: which connector and which key (``--url``/``WA_RELAY_URL``, ``CONNECTOR_API_KEY``/``.data/api-key``);
- ``client``: the HTTP calls and the event stream, with the errors turned into one-line messages;
- ``sse``: server-sent events parsed, and followed across reconnects;
- ``commands``: each command's calls and output; ``link``: linking a phone, the QR drawn in the terminal.
"""

from connector.cli.program import main

__all__ = ["main"]
