"""Who a request is: from the ASGI scope, a JWT, a JWKS endpoint or a gateway header."""
