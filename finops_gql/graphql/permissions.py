from __future__ import annotations

from typing import Any

from strawberry.permission import BasePermission
from strawberry.types import Info

from finops_gql.graphql.context import Context


class IsAdmin(BasePermission):
    message = "this operation needs the admin role"
    error_extensions = {"code": "FORBIDDEN"}

    def has_permission(self, source: Any, info: Info[Context, Any], **kwargs: Any) -> bool:
        return info.context.principal.is_admin
