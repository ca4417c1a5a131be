"""NestJS-shaped error bodies, which the legacy clients parse: {statusCode, message, error}."""

from __future__ import annotations

from http import HTTPStatus

from starlette.responses import Response

from finops_gql.jsonjs import dumps

JSON_MEDIA_TYPE = "application/json; charset=utf-8"


def json_response(payload: object, status_code: int = 200) -> Response:
    return Response(dumps(payload), status_code=status_code, media_type=JSON_MEDIA_TYPE)


def error_response(status_code: int, message: str) -> Response:
    body = {
        "statusCode": status_code,
        "message": message,
        "error": HTTPStatus(status_code).phrase,
    }
    headers = {"WWW-Authenticate": 'Bearer realm="finops_gql"'} if status_code == 401 else None
    response = json_response(body, status_code)
    if headers:
        response.headers.update(headers)
    return response
