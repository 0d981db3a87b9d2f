"""Open connections: websockets whose every message is a request, and streams, held
against the kill switch while they are open."""
