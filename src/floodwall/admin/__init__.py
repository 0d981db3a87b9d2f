"""The admin API: a Starlette app over the operator actions."""
