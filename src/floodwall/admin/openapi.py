"""The admin API's OpenAPI 3.1 document, built from its route table and models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from pydantic import BaseModel

from floodwall.admin.models import Problem
from floodwall.admin.routes import SPECS, Spec
from floodwall.core import rules

__all__ = ["openapi_document"]


PATH_FORM: Final[dict[str, Any]] = {
    "name": "user_id",
    "in": "path",
    "required": True,
    "description": "The user id: any non-empty string, percent-encoded as UTF-8 (it may "
    "contain '/'; a lone surrogate such as U+D800 is its surrogatepass UTF-8, %ED%A0%80; "
    "bytes that are not UTF-8 name the id Python decodes with surrogateescape). The single "
    "segment '-' is the user '-' unless a user_id query parameter is given.",
    "schema": {"type": "string", "minLength": 1, "maxLength": rules.USER_ID.high},
}
NETWORK: Final[dict[str, Any]] = {
    "name": "cidr",
    "in": "path",
    "required": True,
    "description": "An IPv4 or IPv6 network in CIDR form, its '/' percent-encoded "
    "(10.0.0.0%2F8, 2001:db8::%2F32); a bare address is its /32 or /128.",
    "schema": {"type": "string", "minLength": rules.CIDR.low, "maxLength": rules.CIDR.high},
}
PLAN: Final[dict[str, Any]] = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "A plan's name: letters, digits, '_', '.' and '-'.",
    "schema": {
        "type": "string",
        "minLength": rules.PLAN_NAME.low,
        "maxLength": rules.PLAN_NAME.high,
        "pattern": "^[A-Za-z0-9_.-]+$",
    },
}
QUERY_FORM: Final[dict[str, Any]] = {
    "name": "user_id",
    "in": "query",
    "required": True,
    "description": "The user id, for ids a path cannot hold (the empty id) or when a path "
    "is awkward: any string, form-encoded ('+' is a space, '%2B' a plus), its bytes read "
    "as in the path form.",
    "schema": {"type": "string", "minLength": rules.USER_ID.low, "maxLength": rules.USER_ID.high},
}


def _operation(
    spec: Spec,
    path: str,
    user_parameter: dict[str, Any] | None,
    ref: Callable[[type[BaseModel]], dict[str, str]],
    problem_response: Callable[[str], dict[str, Any]],
) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [] if user_parameter is None else [user_parameter]
    if spec.has_network:
        parameters.append(NETWORK)
    if spec.has_plan:
        parameters.append(PLAN)
    if spec.paged:
        parameters += [
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": rules.PAGE_SIZE.high},
            },
            {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}},
        ]
    if spec.windowed:
        parameters += [
            {
                "name": "window",
                "in": "query",
                "required": False,
                "description": "Seconds to look back.",
                "schema": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": rules.WINDOW_SECONDS.high,
                },
            },
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": rules.PAGE_SIZE.high},
            },
        ]
    responses: dict[str, Any] = {
        "200": {
            "description": spec.summary,
            "content": {"application/json": {"schema": ref(spec.response)}},
        },
        "401": problem_response("No valid admin token."),
        "403": problem_response("The admin API is disabled."),
        "429": problem_response("Too many wrong admin tokens from this address (Retry-After)."),
        "503": problem_response("The store did not answer."),
    }
    operation: dict[str, Any] = {
        "summary": spec.summary,
        "operationId": spec.method.lower()
        + "".join(char if char.isalnum() else "_" for char in path),
        "parameters": parameters,
        "responses": responses,
        "security": [{"bearer": []}],
    }
    if (
        spec.body is not None
        or spec.paged
        or spec.windowed
        or spec.has_user
        or spec.has_network
        or spec.has_plan
    ):
        responses["422"] = problem_response("The request is not valid.")
    if spec.body is not None:
        responses["413"] = problem_response("The body is too large.")
        operation["requestBody"] = {
            "required": spec.body_required,
            "content": {"application/json": {"schema": ref(spec.body)}},
        }
    return operation


def openapi_document() -> dict[str, Any]:
    """The admin API's OpenAPI 3.1 document, built from the route table and models."""
    schemas: dict[str, Any] = {}

    def ref(model: type[BaseModel]) -> dict[str, str]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    def problem_response(description: str) -> dict[str, Any]:
        return {
            "description": description,
            "content": {"application/problem+json": {"schema": ref(Problem)}},
        }

    paths: dict[str, Any] = {}
    for spec in SPECS:
        forms = [(spec.path, PATH_FORM if spec.has_user else None)]
        if spec.has_user:
            forms.append((spec.query_form, QUERY_FORM))
        for path, user_parameter in forms:
            operation = _operation(spec, path, user_parameter, ref, problem_response)
            paths.setdefault(path, {})[spec.method.lower()] = operation
    paths["/openapi.json"] = {
        "get": {
            "summary": "This document",
            "operationId": "get_openapi",
            "security": [{"bearer": []}],
            "responses": {
                "200": {"description": "The OpenAPI document", "content": {"application/json": {}}},
                "401": problem_response("No valid admin token."),
                "403": problem_response("The admin API is disabled."),
                "429": problem_response(
                    "Too many wrong admin tokens from this address (Retry-After)."
                ),
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "floodwall admin API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
