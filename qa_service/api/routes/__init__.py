"""One router module per resource; create_app includes them behind the read or write guard."""
