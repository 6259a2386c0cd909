"""LiteLLM custom auth for the test proxy: the master key passes, any other key (or none) is a 401.

LiteLLM loads this file by path, relative to config.yaml (`general_settings.custom_auth`). Without it, a proxy
that has a master key but no database answers a wrong key with 400 "No connected db.", which is not what a
real gateway says and not what the monitor must classify as `auth`.
"""

from __future__ import annotations

import secrets

from fastapi import Request, status
from litellm.proxy._types import (
    LitellmUserRoles,
    ProxyErrorTypes,
    ProxyException,
    UserAPIKeyAuth,
)


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    from litellm.proxy.proxy_server import (
        master_key,  # set from config.yaml when the proxy starts
    )

    if master_key and api_key and secrets.compare_digest(api_key.encode(), str(master_key).encode()):
        return UserAPIKeyAuth(api_key=api_key, user_role=LitellmUserRoles.PROXY_ADMIN)
    raise ProxyException(
        message="Authentication Error: invalid API key",
        type=ProxyErrorTypes.auth_error,
        param="api_key",
        code=status.HTTP_401_UNAUTHORIZED,
    )
