"""The admin API's OpenAPI 3.1 document, built from its route table and models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from floodwall import rules
from floodwall.admin_models import Problem
from floodwall.admin_routes import SPECS

__all__ = ["openapi_document"]


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
        parameters: list[dict[str, Any]] = []
        if spec.has_user:
            parameters.append(
                {
                    "name": "user_id",
                    "in": "path",
                    "required": True,
                    "description": "Any string, percent-encoded.",
                    "schema": {"type": "string", "minLength": 1},
                }
            )
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
            "503": problem_response("The store did not answer."),
        }
        operation: dict[str, Any] = {
            "summary": spec.summary,
            "operationId": spec.method.lower()
            + "".join(char if char.isalnum() else "_" for char in spec.path),
            "parameters": parameters,
            "responses": responses,
            "security": [{"bearer": []}],
        }
        if spec.body is not None or spec.paged or spec.windowed:
            responses["422"] = problem_response("The request is not valid.")
        if spec.body is not None:
            responses["413"] = problem_response("The body is too large.")
            operation["requestBody"] = {
                "required": spec.body_required,
                "content": {"application/json": {"schema": ref(spec.body)}},
            }
        paths.setdefault(spec.path, {})[spec.method.lower()] = operation
    paths["/openapi.json"] = {
        "get": {
            "summary": "This document",
            "operationId": "get_openapi",
            "security": [{"bearer": []}],
            "responses": {
                "200": {"description": "The OpenAPI document", "content": {"application/json": {}}},
                "401": problem_response("No valid admin token."),
                "403": problem_response("The admin API is disabled."),
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
